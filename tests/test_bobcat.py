"""BOBCAT (course_lib.adaptive.bobcat): the inner Newton solve, the straight-through estimator, the tester."""

import pytest
import torch
from torch.func import grad, hessian, vmap

from course_lib.adaptive import bobcat as bc
from course_lib.adaptive.cat import IRTModel, run_cat, split_items


def _toy(n_learners=60, n_items=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = 0.5 + torch.rand(n_items, generator=g), torch.randn(n_items, generator=g)
    theta = torch.randn(n_learners, generator=g)
    return (torch.rand(n_learners, n_items, generator=g) < torch.sigmoid(a * (theta[:, None] - b))).float()


def _model(n_items=12, dims=2, seed=0, dtype=torch.float32):
    m = bc.ResponseModel(n_items, dims, seed=seed, newton_steps=8).to(dtype)
    with torch.no_grad():
        m.item_d.copy_(torch.linspace(-1, 1, n_items))
        m.mu.copy_(torch.tensor([0.2, -0.1][:dims]))
    return m


def test_newton_step_is_torch_func_grad_and_hessian():
    m, r = _model(dtype=torch.float64), _toy().double()[:8]
    w = (torch.rand(r.shape, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    phi = torch.randn(8, 2, dtype=torch.float64)
    new, h = bc.newton_step(phi, w, r, m.item_a, m.item_d, m.mu, m.precision)
    args = (m.item_a, m.item_d, m.mu, m.precision)
    g_ref = vmap(grad(bc._inner_objective), in_dims=(0, 0, 0, None, None, None, None))(phi, w, r, *args)
    h_ref = vmap(hessian(bc._inner_objective), in_dims=(0, 0, 0, None, None, None, None))(phi, w, r, *args)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(new, phi - torch.linalg.solve(h_ref, g_ref))


def test_adapt_shapes_and_reaches_the_map():
    m, r = _model(dtype=torch.float64), _toy().double()[:10]
    w = torch.zeros_like(r)
    w[:, :5] = 1
    phi, cov = m.adapt(w, r)
    assert phi.shape == (10, 2) and cov.shape == (10, 2, 2)
    g = vmap(grad(bc._inner_objective), in_dims=(0, 0, 0, None, None, None, None))(
        phi, w, r, m.item_a, m.item_d, m.mu, m.precision)
    assert g.abs().max() < 1e-8                              # the inner problem is solved, not just stepped
    p = m.prob(phi, cov)
    assert p.shape == (10, 12) and ((p > 0) & (p < 1)).all()
    no_answers, prior_cov = m.adapt(torch.zeros_like(r), r)
    torch.testing.assert_close(no_answers, m.mu.expand(10, 2))
    torch.testing.assert_close(prior_cov[0], torch.linalg.inv(m.precision))


def test_weight_derivative_matches_finite_differences():
    """∂ℓ(Γ; φ*(w))/∂wⱼ — what the estimator feeds the policy — is the true derivative of the unrolled solve."""
    m, r = _model(dtype=torch.float64), _toy().double()[:1]
    held = torch.zeros_like(r, dtype=torch.bool)
    held[0, 8:] = True

    def loss(w):
        phi, cov = m.adapt(w, r)
        p = m.prob(phi, cov)
        return torch.nn.functional.binary_cross_entropy(p[held], r[held])

    w = torch.zeros_like(r)
    w[0, :2] = 1
    w.requires_grad_(True)
    auto = torch.autograd.grad(loss(w), w)[0][0, :8]
    eps = 1e-6
    for j in range(8):
        e = torch.zeros_like(r)
        e[0, j] = eps
        fd = (loss(w.detach() + e) - loss(w.detach() - e)) / (2 * eps)
        assert abs(float(fd.detach()) - float(auto[j])) < 1e-6


def test_straight_through_is_the_exact_policy_gradient_when_the_loss_is_linear():
    """If ℓ(w) = c + g·w, Σₖ ∂ℓ/∂wₖ ∇πₖ = ∇ E_{j∼π} ℓ(e_j) exactly; REINFORCE agrees in expectation."""
    torch.manual_seed(0)
    scores = torch.randn(1, 5, requires_grad=True)
    available = torch.tensor([[True, True, False, True, True]])
    g_lin = torch.tensor([[0.3, -1.0, 7.0, 0.5, 2.0]])
    pi = torch.softmax(scores.masked_fill(~available, -torch.inf), 1)
    exact = torch.autograd.grad((pi * g_lin).sum(), scores)[0]
    gen = torch.Generator().manual_seed(0)
    st, reinforce = torch.zeros_like(scores), torch.zeros_like(scores)
    n = 4000
    for _ in range(n):
        w, j = bc.straight_through(scores, available, gen)
        assert available[0, j]
        st += torch.autograd.grad((w * g_lin).sum(), scores)[0] / n
        logp = torch.log_softmax(scores.masked_fill(~available, -torch.inf), 1)[0, j]
        reinforce += torch.autograd.grad(logp, scores)[0] * g_lin[0, j] / n
    torch.testing.assert_close(st, exact)                      # the same every draw: no variance
    assert (reinforce - exact).abs().max() < 0.1               # Monte Carlo, n = 4000


def test_first_order_scores_predict_the_items_worth_adding():
    """−∂ℓ/∂wⱼ at w = 0 tracks the held-out loss drop from really adding item j (mean r > 0.8 over learners;
    it is a first-order guess for a unit step, so single learners go as low as ~0.6)."""
    m, responses = _model(dtype=torch.float64), _toy(n_items=12).double()
    corr = []
    for i in range(20):
        r = responses[i:i + 1]
        held = torch.zeros_like(r, dtype=torch.bool)
        held[0, 8:] = True

        def loss(w):
            phi, cov = m.adapt(w, r)
            return torch.nn.functional.binary_cross_entropy(m.prob(phi, cov)[held], r[held])

        w = torch.zeros_like(r, requires_grad=True)
        first_order = -torch.autograd.grad(loss(w), w)[0][0, :8]
        with torch.no_grad():
            actual = torch.stack([loss(torch.zeros_like(r)) - loss(torch.eye(12, dtype=torch.float64)[j][None])
                                  for j in range(8)])
        corr.append(torch.corrcoef(torch.stack([first_order, actual]))[0, 1])
    assert torch.stack(corr).mean() > 0.8


def test_policy_never_picks_an_item_twice_and_runs_a_cat():
    r = _toy(n_learners=80)
    tester = bc.train_bobcat(r, torch.arange(60), bc.BOBCATConfig(iterations=3, n_steps=4, batch=16, hidden=16),
                             progress=False)
    test = r[60:]
    split = split_items(test, n_steps=8, seed=1)
    trace = run_cat(tester, test, split, "learned_policy", n_steps=8, scorer=IRTModel(torch.ones(12), torch.zeros(12)))
    for row, pool in zip(trace.asked, split.pool):
        assert len(set(row.tolist())) == 8 and pool[row].all()
    assert trace.heldout_prob.shape == (8, 20, 12)
    assert torch.isfinite(trace.heldout_prob[:, split.heldout]).all()
    state = tester.observe(tester.begin(2), torch.tensor([0, 1]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="asked twice"):
        tester.observe(state, torch.tensor([0, 3]), torch.tensor([1.0, 1.0]))


def test_bilevel_loss_gives_the_policy_a_gradient():
    r = _toy(n_learners=16)
    model, policy = _model(), bc.SelectionPolicy(12, 2, hidden=8)
    pool = torch.ones_like(r, dtype=torch.bool)
    pool[:, 9:] = False
    loss, per_step = bc.bilevel_loss(model, policy, r, pool, ~pool, n_steps=3, generator=torch.Generator())
    loss.backward()
    assert per_step.shape == (3,)
    assert policy.kappa.grad is not None and policy.net[-1].weight.grad.abs().sum() > 0
    assert model.item_a.grad.abs().sum() > 0


def test_bad_input_errors():
    with pytest.raises(ValueError, match="must be > 0"):
        bc.BOBCATConfig(iterations=0)
    with pytest.raises(ValueError, match="holdout_frac"):
        bc.BOBCATConfig(holdout_frac=1.5)
    with pytest.raises(ValueError, match="no item left"):
        bc.straight_through(torch.zeros(2, 3), torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="bool mask"):
        bc.straight_through(torch.zeros(2, 3), torch.ones(2, 3))
    r = _toy()
    with pytest.raises(ValueError, match="lower n_steps"):
        bc.train_bobcat(r, torch.arange(10), bc.BOBCATConfig(n_steps=20), progress=False)
    with pytest.raises(ValueError, match="init must be"):
        bc.train_bobcat(r, torch.arange(10), bc.BOBCATConfig(n_steps=2, iterations=1),
                        init=(torch.zeros(12, 3), torch.zeros(12)), progress=False)
    with pytest.raises(ValueError, match="must hold 0"):
        bc.train_bobcat(r * 2, torch.arange(10), progress=False)
    split = split_items(r, n_steps=2)
    with pytest.raises(ValueError, match="selection policy"):
        run_cat(IRTModel(torch.ones(12), torch.zeros(12)), r, split, "learned_policy", n_steps=2)


def _grid_model(a: torch.Tensor, b: torch.Tensor, loading: torch.Tensor, dims: int) -> bc.ResponseModel:
    """A grid-posterior model that *is* a 2PL per group: item j loads aⱼ on dimension ``loading[j]``, prior N(0, I)."""
    m = bc.ResponseModel(len(a), dims, posterior="grid", grid_points=61).double()
    with torch.no_grad():
        m.item_a.zero_()
        m.item_a[torch.arange(len(a)), loading] = a
        m.item_d.copy_(-a * b)
        m.prior_chol.copy_(torch.eye(dims) * (1 - 1e-3) ** 0.5)       # Λ = I exactly
    return m


@pytest.mark.parametrize("dims", [1, 2])
def test_grid_posterior_is_the_2pl_eap_when_the_model_is_a_2pl_per_section(dims):
    """With one loading per item and an identity prior the grid posterior factorises into one EAP per
    section: its predictive is `IRTModel`'s posterior predictive (the per-section 2PL tester's)."""
    g = torch.Generator().manual_seed(3)
    a, b = (0.5 + torch.rand(12, generator=g)).double(), torch.randn(12, generator=g).double()
    loading = torch.arange(12) % dims
    m, irt = _grid_model(a, b, loading, dims), IRTModel(a, b, groups=loading)
    r = _toy(n_learners=5).double()
    state = irt.begin(5)
    w = torch.zeros_like(r)
    for j in (0, 3, 4):
        state = irt.observe(state, torch.full((5,), j), r[:, j])
        w[:, j] = 1
        phi, cov, p = m.infer(w, r)
        torch.testing.assert_close(p, irt.predict(state).double(), atol=2e-4, rtol=0)
    torch.testing.assert_close(phi, (irt._post(state) @ irt.nodes).reshape(5, dims), atol=2e-4, rtol=0)
    phi0, cov0 = m.adapt(torch.zeros_like(r), r)                 # no answers: the prior's moments
    torch.testing.assert_close(phi0, torch.zeros(5, dims, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(cov0, torch.eye(dims, dtype=torch.float64).expand(5, -1, -1), atol=1e-4, rtol=0)


def test_grid_weight_derivative_matches_finite_differences_and_trains():
    m = bc.ResponseModel(12, 2, posterior="grid", grid_points=21).double()
    r = _toy().double()[:1]
    held = torch.zeros_like(r, dtype=torch.bool)
    held[0, 8:] = True

    def loss(w):
        return torch.nn.functional.binary_cross_entropy(m.infer(w, r)[2][held], r[held])

    w = torch.zeros_like(r)
    w[0, :2] = 1
    w.requires_grad_(True)
    auto = torch.autograd.grad(loss(w), w)[0][0, :8]
    for j in range(8):
        e = torch.zeros_like(r)
        e[0, j] = 1e-6
        with torch.no_grad():
            fd = (loss(w.detach() + e) - loss(w.detach() - e)) / 2e-6
        assert abs(float(fd) - float(auto[j])) < 1e-6
    tester = bc.train_bobcat(_toy(n_learners=80), torch.arange(60),
                             bc.BOBCATConfig(iterations=3, n_steps=4, batch=16, hidden=16, posterior="grid",
                                             grid_points=11),
                             progress=False)
    assert tester.model.posterior == "grid"
    with pytest.raises(ValueError, match="posterior must be one of"):
        bc.ResponseModel(12, 2, posterior="exact")
    with pytest.raises(ValueError, match="grid_points"):
        bc.ResponseModel(12, 4, posterior="grid", grid_points=31)
    with pytest.raises(ValueError, match="posterior must be one of"):
        bc.BOBCATConfig(posterior="map")
