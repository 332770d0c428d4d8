"""Reptile's update against a hand-computed one, vmap vs loop, and its fit loop."""

import pytest
import torch
from torch import nn

from course_lib.algorithms import Reptile
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks


def setup(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    b, _, _ = sample_sinusoid_tasks(3, 5, 5, generator=torch.Generator().manual_seed(2))
    return net, TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)))


def test_update_equals_hand_computed_sgd():
    net, batch = setup()
    alpha, beta, k = 0.05, 0.3, 4
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    # Hand-computed: per task, k steps of plain SGD with torch.optim on a deep copy.
    phis = []
    for i in range(batch.n_tasks):
        clone = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).double()
        clone.load_state_dict(net.state_dict())
        opt = torch.optim.SGD(clone.parameters(), lr=alpha)
        x = torch.cat([batch.x_support[i], batch.x_query[i]]); y = torch.cat([batch.y_support[i], batch.y_query[i]])
        for _ in range(k):
            opt.zero_grad(); nn.functional.mse_loss(clone(x), y).backward(); opt.step()
        phis.append({n: p.detach().clone() for n, p in clone.named_parameters()})
    expected = {n: theta0[n] + beta * (sum(p[n] for p in phis) / len(phis) - theta0[n]) for n in theta0}
    r = Reptile(net, alpha=alpha, steps=k, beta=beta)
    r.step(batch, torch.optim.SGD(r.parameters(), lr=beta))
    for n, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n])


def test_adapt_batch_equals_per_task_adapt():
    net, batch = setup()
    r = Reptile(net, alpha=0.05, steps=3)
    phis = r.adapt_batch(batch)
    for i in range(batch.n_tasks):
        phi = r.adapt(batch.x_support[i], batch.y_support[i])
        for k in phi:
            torch.testing.assert_close(phis[k][i], phi[k])


def test_fit_reduces_loss_and_is_deterministic():
    def run():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
        r = Reptile(net, alpha=0.02, steps=5, beta=0.5)
        return r.fit(lambda g: sample_sinusoid_tasks(10, 10, generator=g)[0], 200, seed=1,
                     progress=False, log_every=50)
    h1, h2 = run(), run()
    assert h1 == h2 and h1["loss"][-1] < h1["loss"][0]


def test_bad_arguments():
    net, _ = setup()
    with pytest.raises(ValueError, match="steps"):
        Reptile(net, steps=0)
    with pytest.raises(ValueError, match="empty"):
        Reptile(net).adapt(torch.zeros(0, 1), torch.zeros(0, 1))


def test_step_sizes_are_validated_at_the_boundary():
    for kwargs in ({"alpha": 0.0}, {"alpha": -0.1}, {"beta": 0.0}, {"alpha": float("nan")}, {"steps": 1.5}):
        with pytest.raises(ValueError, match="alpha|beta|steps"):
            Reptile(nn.Linear(1, 1), **kwargs)


def test_fit_anneals_the_outer_step_linearly_to_zero():
    """Nichol et al.'s schedule: β·(1 − t/iterations) at update t; without anneal β stays constant."""
    for anneal, expected in ((True, [0.1, 0.075, 0.05, 0.025]), (False, [0.1] * 4)):
        torch.manual_seed(0)
        learner = Reptile(nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)), "mse", alpha=0.01, steps=2,
                          beta=0.1)
        seen, original = [], learner.step

        def spy(batch, optimizer, compile=False, original=original, seen=seen):
            seen.append(optimizer.param_groups[0]["lr"])
            return original(batch, optimizer, compile)

        learner.step = spy
        learner.fit(lambda g: sample_sinusoid_tasks(3, 5, 5, generator=g)[0], 4, anneal=anneal, progress=False)
        assert seen == pytest.approx(expected)
