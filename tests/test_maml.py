"""MAML's meta-gradient: finite differences, learn2learn, first order, Meta-SGD, vmap vs loop."""

import copy

import pytest
import torch
from torch import nn

from course_lib.algorithms import MAML, inner_adapt, maml_loss
from course_lib.algorithms.functional import get_loss
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def batch64(n_tasks=3, k=5, q=6, seed=1) -> TaskBatch:
    b, _, _ = sample_sinusoid_tasks(n_tasks, k, q, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)))


def meta_grad(m: MAML, batch: TaskBatch) -> dict:
    for p in m.parameters():
        p.grad = None
    m.meta_loss(batch).backward()
    return {k: p.grad.clone() for k, p in m.theta.items()}


@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_matches_finite_differences(steps):
    net, batch = small_net(), batch64()
    m = MAML(net, "mse", alpha=0.1, steps=steps)
    g = meta_grad(m, batch)
    theta = {k: v.detach().clone() for k, v in m.theta.items()}
    eps = 1e-6
    gen = torch.Generator().manual_seed(0)
    for name in theta:
        for _ in range(3):
            idx = tuple(int(torch.randint(s, (1,), generator=gen)) for s in theta[name].shape)
            plus = {k: v.clone() for k, v in theta.items()}; plus[name][idx] += eps
            minus = {k: v.clone() for k, v in theta.items()}; minus[name][idx] -= eps
            f = lambda th: maml_loss(net, th, batch, loss_fn=get_loss("mse"), alpha=0.1, steps=steps).item()
            fd = (f(plus) - f(minus)) / (2 * eps)
            assert g[name][idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_equals_learn2learn(steps, first_order):
    l2l = pytest.importorskip("learn2learn", reason="the suite needs learn2learn: run `make setup`")
    net, batch = small_net(), batch64(n_tasks=4)
    ours = meta_grad(MAML(net, "mse", alpha=0.1, steps=steps, first_order=first_order), batch)
    ref = l2l.algorithms.MAML(copy.deepcopy(net), lr=0.1, first_order=first_order)
    total = 0.0
    for i in range(batch.n_tasks):
        learner = ref.clone()
        for _ in range(steps):
            learner.adapt(nn.functional.mse_loss(learner(batch.x_support[i]), batch.y_support[i]))
        total = total + nn.functional.mse_loss(learner(batch.x_query[i]), batch.y_query[i])
    (total / batch.n_tasks).backward()
    for name, p in ref.module.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, atol=1e-5, rtol=0)


def test_first_order_drops_the_hessian_term():
    net, batch = small_net(), batch64()
    so = meta_grad(MAML(net, alpha=0.1, steps=1), batch)
    fo = meta_grad(MAML(net, alpha=0.1, steps=1, first_order=True), batch)
    # FOMAML gradient = gradient of the query loss at φ, treated as a function of φ.
    theta = {k: v.detach() for k, v in net.named_parameters()}
    expected = {k: torch.zeros_like(v) for k, v in theta.items()}
    for i in range(batch.n_tasks):
        t = batch.task(i)
        phi = inner_adapt(net, theta, t.x_support[0], t.y_support[0], None, loss_fn=get_loss("mse"),
                          alpha=0.1, steps=1)
        phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
        loss = nn.functional.mse_loss(torch.func.functional_call(net, phi, (t.x_query[0],)), t.y_query[0])
        for k, gk in zip(phi, torch.autograd.grad(loss, list(phi.values()))):
            expected[k] += gk / batch.n_tasks
    for k in fo:
        torch.testing.assert_close(fo[k], expected[k])
    assert any((so[k] - fo[k]).abs().max() > 1e-6 for k in so)


def test_vectorised_equals_per_task_loop():
    net, batch = small_net(), batch64(n_tasks=5)
    m = MAML(net, alpha=0.05, steps=2)
    vec = m.meta_loss(batch).item()
    loop = sum(m.meta_loss(batch.task(i)).item() for i in range(batch.n_tasks)) / batch.n_tasks
    assert vec == pytest.approx(loop, rel=1e-10)
    phis = m.adapt_batch(batch)
    for i in range(batch.n_tasks):
        phi = m.adapt(batch.x_support[i], batch.y_support[i])
        for k in phi:
            torch.testing.assert_close(phis[k][i], phi[k])


def test_meta_sgd_learns_rates_and_matches_constant_alpha_at_init():
    net, batch = small_net(), batch64()
    plain = MAML(net, alpha=0.1, steps=2).meta_loss(batch)
    msgd = MAML(net, alpha=0.1, steps=2, meta_sgd=True)
    assert msgd.meta_loss(batch).item() == pytest.approx(plain.item(), rel=1e-12)
    msgd.meta_loss(batch).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in msgd.alphas.values())


def test_partial_adaptation_only_changes_adapted_parameters():
    net, batch = small_net(), batch64()
    m = MAML(net, alpha=0.1, steps=1, adapt=["4."])
    phi = m.adapt(batch.x_support[0], batch.y_support[0])
    for k, v in m.theta.items():
        changed = not torch.equal(phi[k], v.detach())
        assert changed == k.startswith("4.")


def test_masked_support_ignores_padding():
    net, batch = small_net(), batch64(n_tasks=1, k=6)
    m = MAML(net, alpha=0.1, steps=1)
    mask = torch.tensor([True] * 4 + [False] * 2)
    garbage_y = batch.y_support[0].clone(); garbage_y[4:] = 1e6
    a = m.adapt(batch.x_support[0], garbage_y, mask=mask)
    b = m.adapt(batch.x_support[0, :4], batch.y_support[0, :4])
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_fit_is_deterministic_on_cpu_and_reduces_loss():
    def run():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 1))
        m = MAML(net, alpha=0.01, steps=1)
        h = m.fit(lambda g: sample_sinusoid_tasks(8, 10, generator=g)[0], 200, beta=3e-3, seed=3,
                  progress=False, log_every=50)
        return h, [p.detach().clone() for p in m.parameters()]
    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2 and all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert h1["loss"][-1] < h1["loss"][0]


def test_bad_inputs_raise_clear_errors():
    net = small_net()
    with pytest.raises(ValueError, match="alpha"):
        MAML(net, alpha=0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        MAML(net, loss="hinge")
    with pytest.raises(ValueError, match="matches no parameter"):
        MAML(net, adapt=["head."])
    m = MAML(net)
    with pytest.raises(ValueError, match="empty"):
        m.adapt(torch.zeros(0, 1, dtype=torch.float64), torch.zeros(0, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        m.adapt(torch.tensor([[float("nan")]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))


def test_alpha_has_one_form_inside_a_number_equals_the_same_rate_per_parameter():
    # A scalar α and a dict of per-parameter rates holding the same value are the same objective.
    net, batch, mse = small_net(), batch64(), get_loss("mse")
    theta = {name: v.detach().clone().requires_grad_() for name, v in net.named_parameters()}
    rates = {name: torch.full_like(v, 0.1) for name, v in theta.items()}
    scalar = maml_loss(net, theta, batch, loss_fn=mse, alpha=0.1, steps=2)
    per_param = maml_loss(net, theta, batch, loss_fn=mse, alpha=rates, steps=2)
    g1 = torch.autograd.grad(scalar, list(theta.values()))
    g2 = torch.autograd.grad(per_param, list(theta.values()))
    assert torch.equal(scalar, per_param)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(g1, g2))
    m = MAML(net, "mse", alpha=0.1)
    assert set(m.alpha) == set(theta) and all(a.dim() == 0 and float(a) == 0.1 for a in m.alpha.values())
    assert m.alphas is None and len(m.parameters()) == len(theta)
    msgd = MAML(small_net(), "mse", alpha=0.1, meta_sgd=True)
    assert msgd.alphas is msgd.alpha and len(msgd.parameters()) == 2 * len(theta)


def test_alpha_and_steps_are_validated_at_the_boundary():
    for bad in (0.0, -0.1, float("nan"), "0.1", True, None):
        with pytest.raises(ValueError, match="alpha"):
            MAML(small_net(), alpha=bad)
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="steps"):
            MAML(small_net(), steps=bad)
    net, batch = small_net(), batch64()
    theta = dict(net.named_parameters())
    with pytest.raises(ValueError, match="no rate for the adapted parameters"):
        inner_adapt(net, theta, batch.x_support[0], batch.y_support[0], None, loss_fn=get_loss("mse"),
                    alpha={"0.weight": torch.tensor(0.1)}, steps=1)
    with pytest.raises(ValueError, match="finite number"):
        inner_adapt(net, theta, batch.x_support[0], batch.y_support[0], None, loss_fn=get_loss("mse"),
                    alpha=float("inf"), steps=1)


def test_wrapper_state_is_the_models_parameters_read_afresh_and_pure_functions_agree():
    # θ is read from the model at every use: replacing a parameter (load_state_dict(assign=True))
    # is seen at once, and the wrapper's adapt_batch is the pure function on that θ.
    from course_lib.algorithms.maml import adapt_batch, predict_batch

    net, batch = small_net(), batch64()
    m = MAML(net, "mse", alpha=0.1, steps=2)
    new_state = {name: v.detach() + 0.5 for name, v in small_net(seed=3).state_dict().items()}
    net.load_state_dict(new_state, assign=True)
    assert all(torch.equal(m.theta[name], new_state[name]) for name in new_state)
    phi = m.adapt_batch(batch)
    pure = adapt_batch(net, dict(net.named_parameters()), batch, loss_fn=get_loss("mse"), alpha=0.1, steps=2)
    assert all(torch.equal(phi[name], pure[name]) for name in phi)
    assert torch.equal(m.predict_batch(phi, batch.x_query), predict_batch(net, pure, batch.x_query))
    before = {name: v.detach().clone() for name, v in net.named_parameters()}
    m.adapt_batch(batch)
    m.adapt(batch.x_support[0], batch.y_support[0])
    assert all(torch.equal(before[name], v) for name, v in net.named_parameters())  # adapting is pure


def test_bad_batches_samplers_and_step_counts_raise_clear_errors():
    net, batch = small_net(), batch64()
    m = MAML(net, "mse", alpha=0.1)
    with pytest.raises(ValueError, match="TaskBatch"):
        m.adapt_batch((batch.x_support, batch.y_support))
    with pytest.raises(ValueError, match="sample must be a function"):
        m.fit(batch, 3, progress=False)
    with pytest.raises(ValueError, match="steps"):
        m.adapt_batch(batch, steps=-1)
    with pytest.raises(ValueError, match="steps"):
        m.adapt(batch.x_support[0], batch.y_support[0], steps=2.5)
