"""On a CUDA or MPS machine: the algorithms run there and agree with the CPU (skipped elsewhere)."""

import pytest
import torch
from torch import nn

from course_lib.algorithms import MAML, Reptile
from course_lib.tasks import sample_sinusoid_tasks

ACCEL = "cuda" if torch.cuda.is_available() else (
    "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else None)
pytestmark = pytest.mark.skipif(ACCEL is None, reason="no GPU on this machine")


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_on_gpu_matches_cpu(first_order):
    b, _, _ = sample_sinusoid_tasks(8, 10, 10, generator=torch.Generator().manual_seed(0))
    grads = {}
    for dev in ("cpu", ACCEL):
        m = MAML(net().to(dev), alpha=0.01, steps=2, first_order=first_order)
        m.meta_loss(b.to(dev)).backward()
        grads[dev] = {k: p.grad.cpu() for k, p in m.theta.items()}
    for k in grads["cpu"]:
        torch.testing.assert_close(grads[ACCEL][k], grads["cpu"][k], atol=1e-4, rtol=1e-3)


def test_fit_runs_on_gpu_compiled_and_eager():
    for compile in (False, True):
        m = MAML(net().to(ACCEL), alpha=0.01, steps=1)
        h = m.fit(lambda g: sample_sinusoid_tasks(25, 10, generator=g, device=ACCEL)[0], 300,
                  compile=compile, progress=False)
        assert h["loss"][-1] < h["loss"][0]
    r = Reptile(net().to(ACCEL), alpha=0.02, steps=5, beta=0.1)
    h = r.fit(lambda g: sample_sinusoid_tasks(10, 10, generator=g, device=ACCEL)[0], 50, progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])))
