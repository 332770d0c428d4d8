"""course_lib.algorithms.taylor: the O(α²) residual, the k = 1 identities, agreement with course_lib's algorithms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import grad, vmap

from course_lib.algorithms import taylor as T
from course_lib.algorithms import maml_loss, reptile_direction
from course_lib.algorithms.functional import get_loss, task_loss
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks


def mlp_tasks(tasks=4, m=3, n=4, seed=0):
    """A float64 tanh MLP and sinusoid tasks split into m minibatches of n points: x [tasks, m, n, 1]."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    b, _, _ = sample_sinusoid_tasks(tasks, m * n, 1, generator=torch.Generator().manual_seed(seed + 1))
    return net, b.x_support.double().reshape(tasks, m, n, 1), b.y_support.double().reshape(tasks, m, n, 1)


def logistic_tasks(tasks=4, m=3, n=6, d=3, seed=0):
    """Logistic regression (a learner's P(correct) from item features) with binary answers."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Linear(d, 1).double()
    x = torch.randn(tasks, m, n, d, generator=g, dtype=torch.float64)
    w = torch.randn(tasks, 1, 1, d, generator=g, dtype=torch.float64)
    y = (torch.rand(tasks, m, n, generator=g, dtype=torch.float64) < torch.sigmoid((x * w).sum(-1))).double()
    return net, x, y


def test_coefficients_match_the_paper():
    for steps in range(1, 7):
        assert T.coefficients("maml", steps) == (1, 2 * (steps - 1))
        assert T.coefficients("fomaml", steps) == (1, steps - 1)
        assert T.coefficients("reptile", steps) == (steps, steps * (steps - 1) // 2)
    with pytest.raises(ValueError, match="unknown algorithm"):
        T.coefficients("protonet", 2)
    with pytest.raises(ValueError, match="steps must be an integer"):
        T.coefficients("maml", 0)


def test_orderings_are_all_ordered_tuples_of_distinct_minibatches():
    o = T.orderings(4, 3)
    assert o.shape == (math.perm(4, 3), 3)
    assert len({tuple(r) for r in o.tolist()}) == len(o)
    assert all(len(set(r)) == 3 for r in o.tolist())
    with pytest.raises(ValueError, match="distinct minibatches"):
        T.orderings(2, 3)


@pytest.mark.parametrize("make, loss", [(mlp_tasks, "mse"), (logistic_tasks, "bce")])
def test_residual_shrinks_like_alpha_squared(make, loss):
    net, x, y = make()
    rows = T.residual_study(net, x, y, alphas=(0.004, 0.002, 0.001), steps_grid=(2, 3), loss=loss,
                            progress=False)
    for algo in T.ALGORITHMS:
        for steps in (2, 3):
            r = [row for row in rows if row["algorithm"] == algo and row["steps"] == steps]
            res = [row["residual"] for row in r]
            lead = [row["residual_leading"] for row in r]
            # Halving α divides the residual by ~4 (O(α²)) but the leading-term residual only by ~2 (O(α)).
            for a, b in zip(res, res[1:]):
                assert 3.5 < a / b < 4.5, (algo, steps, res)
            for a, b in zip(lead, lead[1:]):
                assert 1.7 < a / b < 2.3, (algo, steps, lead)
            assert 1.85 < T.loglog_slope([row["alpha"] for row in r], res) < 2.15
            assert res[-1] < 0.05 * lead[-1]  # the AvgGradInner term explains almost all of the rest


def test_k1_every_algorithm_is_the_average_gradient():
    net, x, y = mlp_tasks()
    terms = T.taylor_terms(net, x, y)
    alpha = 0.05  # not small: the identity is exact for k = 1, not only to O(α²)
    upd = T.expected_updates(net, x, y, steps=1, alpha=alpha)
    for algo in T.ALGORITHMS:
        torch.testing.assert_close(T.flatten(upd[algo]), T.flatten(terms["avg_grad"]), rtol=1e-10, atol=1e-12)
    # FOMAML and Reptile coincide, and Reptile's θ − φ is α times the gradient, also with course_lib's
    # reptile_direction on one task whose data is minibatch 0.
    theta = {k: v.detach() for k, v in net.named_parameters()}
    xs, ys = x[:1, 0], y[:1, 0]
    one = TaskBatch(xs[:, :2], ys[:, :2], xs[:, 2:], ys[:, 2:])  # support ∪ query = the minibatch
    d = reptile_direction(net, theta, one, loss_fn=get_loss("mse"), alpha=alpha, steps=1)
    g = grad(lambda p: task_loss(net, p, get_loss("mse"), xs[0], ys[0]))(theta)
    torch.testing.assert_close(T.flatten(d), alpha * T.flatten(g), rtol=1e-10, atol=1e-12)


def test_sequence_update_agrees_with_course_lib_on_repeated_data():
    # With the same minibatch at every step, the sequence is exactly what course_lib's MAML (support =
    # query = that minibatch, k − 1 steps) and Reptile (k steps on support ∪ query) compute.
    net, x, y = mlp_tasks(tasks=2, m=1, n=6)
    theta = {k: v.detach() for k, v in net.named_parameters()}
    alpha, k, mse = 0.03, 3, get_loss("mse")
    xs, ys = x[:, 0], y[:, 0]                                     # [tasks, n, 1]
    seq = vmap(lambda a, b: T.sequence_update(net, theta, a[None].expand(k, -1, -1), b[None].expand(k, -1, -1),
                                              alpha=alpha, loss=mse))(xs, ys)
    mean = {a: {n: v.mean(0) for n, v in seq[a].items()} for a in T.ALGORITHMS}
    batch = TaskBatch(xs, ys, xs, ys)
    for first_order, name in ((False, "maml"), (True, "fomaml")):
        g = grad(lambda p: maml_loss(net, p, batch, loss_fn=mse, alpha=alpha, steps=k - 1,
                                     first_order=first_order))(theta)
        torch.testing.assert_close(T.flatten(mean[name]), T.flatten(g), rtol=1e-9, atol=1e-12)
    split = TaskBatch(xs[:, :3], ys[:, :3], xs[:, 3:], ys[:, 3:])
    d = reptile_direction(net, theta, split, loss_fn=mse, alpha=alpha, steps=k)
    torch.testing.assert_close(T.flatten(mean["reptile"]), T.flatten(d) / alpha, rtol=1e-9, atol=1e-12)


def test_fomaml_is_the_last_gradient_at_the_adapted_parameters():
    net, x, y = mlp_tasks(tasks=1, m=3)
    theta = {k: v.detach() for k, v in net.named_parameters()}
    alpha, mse = 0.05, get_loss("mse")
    out = T.sequence_update(net, theta, x[0], y[0], alpha=alpha, loss=mse)
    phi = theta
    for j in range(2):
        g = grad(lambda p: task_loss(net, p, mse, x[0, j], y[0, j]))(phi)
        phi = {n: phi[n] - alpha * g[n] for n in phi}
    last = grad(lambda p: task_loss(net, p, mse, x[0, 2], y[0, 2]))(phi)
    torch.testing.assert_close(T.flatten(out["fomaml"]), T.flatten(last), rtol=1e-10, atol=1e-12)


def test_avg_grad_inner_is_half_the_gradient_of_the_inner_product():
    # Nichol et al.: E[H̄₂ḡ₁] = ½ ∇_θ E[ḡ₁·ḡ₂] (two different minibatches of the same task).
    net, x, y = mlp_tasks(tasks=3, m=3)
    theta = {k: v.detach() for k, v in net.named_parameters()}
    mse = get_loss("mse")
    m = x.shape[1]

    def mean_inner_product(p):
        total = 0.0
        for t in range(x.shape[0]):
            gs = [T.flatten(grad(lambda q: task_loss(net, q, mse, x[t, j], y[t, j]))(p)) for j in range(m)]
            total = total + sum(gs[i] @ gs[j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        return total / x.shape[0]

    expected = {n: 0.5 * v for n, v in grad(mean_inner_product)(theta).items()}
    got = T.taylor_terms(net, x, y)["avg_grad_inner"]
    torch.testing.assert_close(T.flatten(got), T.flatten(expected), rtol=1e-9, atol=1e-12)


def test_loglog_slope_and_bad_inputs():
    assert T.loglog_slope([1, 0.5, 0.25], [3, 0.75, 0.1875]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="two alphas"):
        T.loglog_slope([1.0], [1.0])
    net, x, y = mlp_tasks()
    with pytest.raises(ValueError, match="at least 2 minibatches"):
        T.taylor_terms(net, x[:, :1], y[:, :1])
    with pytest.raises(ValueError, match=r"\[tasks, minibatches, n"):
        T.taylor_terms(net, x[0, 0], y[0, 0])
    with pytest.raises(ValueError, match="at least 4 minibatches"):
        T.expected_updates(net, x, y, steps=4, alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        T.expected_updates(net, x, y, steps=2, alpha=0.0)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        T.taylor_terms(net, bad, y)
    with pytest.raises(ValueError, match="positive"):
        T.residual_study(net, x, y, alphas=(), steps_grid=(2,), progress=False)
