"""FusedMAML = MAML + torch.optim.Adam (property: the same trajectory), eager and compiled."""

from __future__ import annotations

import pytest
import torch

from course_lib.algorithms import MAML
from course_lib.algorithms.fused import FusedMAML, adam_update
from course_lib.models.regressor import mlp_regressor
from course_lib.tasks import sample_sinusoid_tasks


def test_adam_update_equals_torch_adam():
    g = torch.Generator().manual_seed(0)
    theta = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)}
    p = {k: torch.nn.Parameter(v.clone()) for k, v in theta.items()}
    opt = torch.optim.Adam(p.values(), lr=0.01)
    m = {k: torch.zeros_like(v) for k, v in theta.items()}
    v = {k: torch.zeros_like(x) for k, x in theta.items()}
    for t in range(1, 6):
        grads = {k: torch.randn(x.shape, generator=g) for k, x in theta.items()}
        theta, m, v = adam_update(theta, grads, m, v, torch.tensor(float(t)), 0.01)
        for k in p:
            p[k].grad = grads[k]
        opt.step()
    for k in p:
        torch.testing.assert_close(theta[k], p[k].detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("first_order", [False, True])
def test_fused_training_follows_maml_with_adam(first_order):
    batches = [sample_sinusoid_tasks(6, 5, generator=torch.Generator().manual_seed(s))[0] for s in range(8)]
    torch.manual_seed(0)
    ref_model = mlp_regressor()
    torch.manual_seed(0)
    fused = FusedMAML(mlp_regressor(), alpha=0.01, steps=1, first_order=first_order, beta=1e-2, compile=False)
    ref = MAML(ref_model, alpha=0.01, steps=1, first_order=first_order)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for b in batches:
        ref_loss = ref.step(b, opt)
        loss = fused.step(b.x_support, b.y_support, b.x_query, b.y_query)
        torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    fused.sync()
    for (k, a), (_, b) in zip(fused.model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=k)
    assert max((a - b).abs().max() for a, b in zip(fused.theta.values(), mlp_regressor().parameters())) > 1e-3


def test_fit_history_and_validation():
    fused = FusedMAML(mlp_regressor(), compile=False)
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731 - 3 iterations of 4 tasks
    history = fused.fit(sample, iterations=7, chunk=3, progress=False, log_every=5)
    assert history["iteration"] == [5, 7] and all(h > 0 for h in history["loss"])
    assert fused.t.item() == 7
    with pytest.raises(ValueError, match="alpha > 0"):
        FusedMAML(mlp_regressor(), alpha=0)


def test_fit_refuses_changing_shapes():
    fused = FusedMAML(mlp_regressor(), compile=False)
    calls = iter([8, 12])
    sample = lambda g: sample_sinusoid_tasks(4 * 2, next(calls), generator=g)[0]  # noqa: E731 - K changes
    with pytest.raises(ValueError, match="same shapes"):
        fused.fit(sample, iterations=4, chunk=2, progress=False)


def test_compiled_fit_matches_eager():
    sample = lambda g: sample_sinusoid_tasks(4 * 3, 5, generator=g)[0]  # noqa: E731
    torch.manual_seed(0)
    eager = FusedMAML(mlp_regressor(), compile=False)
    eager.fit(sample, iterations=6, chunk=3, progress=False)
    torch.manual_seed(0)
    compiled = FusedMAML(mlp_regressor(), compile=True)
    compiled.fit(sample, iterations=6, chunk=3, progress=False)  # guards skipped after the first step
    for k, v in eager.theta.items():
        torch.testing.assert_close(compiled.theta[k], v, atol=1e-5, rtol=1e-4)
