"""Tests for course_lib.baselines.irt (2PL fit, EAP, information) and course_lib.baselines."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from course_lib.baselines import irt
from course_lib.baselines.fine_tuning import PretrainFinetune
from course_lib.baselines.item_mean import ItemMean
from course_lib.baselines.logistic import PerLearnerLogistic
from course_lib.data.synthetic import sample_2pl

A = torch.tensor([1.2, 0.7, 2.0, 1.0, 0.4])
B = torch.tensor([-0.5, 0.3, 1.1, 0.0, -1.5])


def brute_force_posterior(items, answers, prior_mean=0.0, prior_sd=1.0):
    """Posterior mean and SD of θ by adaptive numerical integration (scipy.integrate.quad)."""
    a, b = A[items].double().numpy(), B[items].double().numpy()
    y = np.asarray(answers, float)

    def unnorm(t):
        p = 1 / (1 + np.exp(-a * (t - b)))
        lik = np.prod(np.where(y == 1, p, 1 - p))
        return lik * math.exp(-0.5 * ((t - prior_mean) / prior_sd) ** 2)

    lo, hi = prior_mean - 10 * prior_sd, prior_mean + 10 * prior_sd
    z = integrate.quad(unnorm, lo, hi, limit=200)[0]
    m1 = integrate.quad(lambda t: t * unnorm(t), lo, hi, limit=200)[0] / z
    m2 = integrate.quad(lambda t: t * t * unnorm(t), lo, hi, limit=200)[0] / z
    return m1, math.sqrt(m2 - m1 * m1)


@pytest.mark.parametrize("items, answers, prior", [
    ([0, 1, 2], [1, 0, 1], (0.0, 1.0)),
    ([2, 3, 4, 0], [1, 1, 1, 1], (0.0, 1.0)),
    ([4], [0], (0.5, 1.5)),
    ([0, 1, 2, 3, 4], [0, 0, 0, 1, 0], (-0.3, 0.8)),
])
def test_eap_matches_brute_force_quadrature(items, answers, prior):
    mean, sd = irt.eap_ability(A, B, torch.tensor(items), torch.tensor(answers, dtype=torch.float32),
                               prior_mean=prior[0], prior_sd=prior[1])
    m_ref, sd_ref = brute_force_posterior(items, answers, *prior)
    assert abs(mean - m_ref) < 2e-3 and abs(sd - sd_ref) < 2e-3


def test_eap_without_answers_is_the_prior():
    mean, sd = irt.eap_ability(A, B, torch.tensor([], dtype=torch.long), torch.tensor([]), prior_mean=0.4)
    assert abs(mean - 0.4) < 1e-6 and abs(sd - 1.0) < 1e-3


def test_eap_batch_equals_loop_and_respects_mask():
    g = torch.Generator().manual_seed(0)
    items = torch.randint(0, 5, (20, 4), generator=g)
    answers = torch.randint(0, 2, (20, 4), generator=g).float()
    mask = torch.rand(20, 4, generator=g) > 0.3
    answers_nan = torch.where(mask, answers, torch.tensor(float("nan")))
    mean, sd = irt.eap_ability_batch(A, B, items, answers_nan.nan_to_num(0), mask)
    for i in range(20):
        m, s = irt.eap_ability(A, B, items[i][mask[i]], answers[i][mask[i]])
        assert abs(mean[i].item() - m) < 1e-5 and abs(sd[i].item() - s) < 1e-5
    # more correct answers -> higher ability (monotone likelihood ratio)
    up = irt.eap_ability(A, B, torch.tensor([0, 1]), torch.tensor([1.0, 1.0]))[0]
    down = irt.eap_ability(A, B, torch.tensor([0, 1]), torch.tensor([1.0, 0.0]))[0]
    assert up > down


def test_posterior_predictive_matches_brute_force():
    items, answers = [0, 2], [1, 0]
    a, b = A[items].double().numpy(), B[items].double().numpy()

    def post(t):
        p = 1 / (1 + np.exp(-a * (t - b)))
        return np.prod(np.where(np.array(answers) == 1, p, 1 - p)) * math.exp(-0.5 * t * t)

    z = integrate.quad(post, -10, 10)[0]
    want = [integrate.quad(lambda t: post(t) / (1 + math.exp(-A[j].item() * (t - B[j].item()))), -10, 10)[0] / z
            for j in (1, 3, 4)]
    got = irt.posterior_predictive_batch(A, B, torch.tensor([items]), torch.tensor([answers], dtype=torch.float32),
                                         None, torch.tensor([[1, 3, 4]]))
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-3)


def test_prob_correct_broadcasts_and_information_is_derivative():
    theta = torch.linspace(-2, 2, 7)[:, None].requires_grad_(True)
    p = irt.prob_correct(theta, A, B)
    assert p.shape == (7, 5)
    torch.testing.assert_close(irt.prob_correct(torch.tensor(0.3), A, B)[2],
                               torch.sigmoid(A[2] * (0.3 - B[2])))
    (dp,) = torch.autograd.grad(p.sum(), theta, create_graph=False)
    info = irt.fisher_information(theta.detach(), A, B)
    # I(θ) = a · dp/dθ item by item; summed over items here through the gradient of the sum
    torch.testing.assert_close((info / A).sum(1, keepdim=True), dp, rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        irt.eap_ability(A, B, torch.tensor([0, 1]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="0 \\(incorrect\\) or 1"):
        irt.eap_ability(A, B, torch.tensor([0]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="item indices"):
        irt.eap_ability(A, B, torch.tensor([7]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        irt.eap_ability(A[:, None], B, torch.tensor([0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="prior_sd"):
        irt.quadrature_grid(61, 0.0, 0.0)
    with pytest.raises(ValueError, match="must hold 0"):
        irt.fit_2pl(torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="all-correct or all-wrong"):
        irt.fit_2pl(torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="engine"):
        irt.fit_2pl(sample_2pl(50, 3, seed=0).responses, engine="mirt")


@pytest.fixture(scope="module")
def small():
    return sample_2pl(400, 5, seed=3)


def test_fit_2pl_recovers_parameters_with_missing_answers():
    s = sample_2pl(3000, 10, missing_rate=0.2, seed=11)
    p = irt.fit_2pl(s.responses)
    assert (p.a - s.a[:, 0]).abs().max() < 0.25
    assert (p.b - s.b).abs().max() < 0.25
    assert p.info["engine"] == "torch" and p.to_frame().shape == (10, 2)
    torch.testing.assert_close(p.d, -p.a * p.b)


def test_fast_fit_agrees_with_irtorch(small):
    """The L-BFGS fit and irtorch's MML maximise the same marginal likelihood: same parameters."""
    fast = irt.fit_2pl(small.responses)
    ref = irt.fit_2pl(small.responses, engine="irtorch")
    assert (fast.a - ref.a).abs().max() < 0.08
    assert (fast.b - ref.b).abs().max() < 0.08
    # and the fast fit's marginal likelihood is at least as high (it is the maximiser on its grid)
    assert fast.info["loglik_per_learner"] >= ref.info["loglik_per_learner"] - 1e-4


def test_marginal_likelihood_is_what_the_fit_maximises(small):
    p = irt.fit_2pl(small.responses)
    nodes, log_w = irt.quadrature_grid(61)
    r = small.responses.double()
    best = irt.marginal_log_likelihood(r, p.a.double(), p.d.double(), nodes, log_w)
    for da, dd in ((0.05, 0.0), (0.0, 0.05), (-0.05, -0.05)):
        other = irt.marginal_log_likelihood(r, p.a.double() + da, p.d.double() + dd, nodes, log_w)
        assert other < best


# ----------------------------------------------------------------------------- simple baselines

def test_item_mean():
    r = torch.tensor([[1.0, 0.0], [1.0, float("nan")], [0.0, 1.0]])
    m = ItemMean(r, prior=1.0)
    torch.testing.assert_close(m.p, torch.tensor([3 / 5, 2 / 4]))
    out = m.predict(torch.tensor([[0]]), torch.tensor([[1.0]]), None, torch.tensor([[1, 0]]))
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.6]]))


def test_per_learner_logistic_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    feats = PerLearnerLogistic.group_features(["q", "q", "v", "v", "v"])
    items = torch.tensor([[0, 2, 3, 1, 4]])
    answers = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    model = PerLearnerLogistic(feats, l2=2.0, iterations=30)
    w = model.fit_weights(items, answers, None)[0]
    sk = LogisticRegression(C=1 / 2.0, fit_intercept=False, tol=1e-10).fit(feats[items[0]].numpy(),
                                                                             answers[0].numpy())
    np.testing.assert_allclose(w.numpy(), sk.coef_[0], atol=1e-5)
    with pytest.raises(ValueError, match="l2"):
        PerLearnerLogistic(feats, l2=0.0)


def test_pretrain_finetune_moves_towards_the_support():
    s = sample_2pl(500, 8, seed=2)
    pf = PretrainFinetune(8, dims=1, seed=0)
    hist = pf.pretrain(s.responses, epochs=100)
    assert hist[-1] < hist[0]
    q = torch.arange(8)[None, :].repeat(2, 1)
    items = torch.tensor([[0, 1, 2], [0, 1, 2]])
    ans = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    p = pf.predict(items, ans, None, q, alpha=1.0, steps=3)
    assert (p[0, 3:] > p[1, 3:]).all() or (p[0, 3:] < p[1, 3:]).all()  # the ability moved


# ----------------------------------------------------------------------------- one grid posterior

def test_grid_log_likelihood_is_the_sum_over_answers():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64)              # [items, Q]
    items = torch.tensor([[0, 2, 4], [1, 1, 3]])
    answers = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    correct, wrong = irt.answer_counts(items, answers, mask, 5)
    got = irt.grid_log_likelihood(correct, wrong, logits)
    for i in range(2):
        want = sum(torch.nn.functional.logsigmoid((2 * answers[i, j] - 1) * logits[items[i, j]])
                   for j in range(3) if mask[i, j])
        torch.testing.assert_close(got[i], want)


def test_synthetic_ceiling_and_2pl_posterior_predictive_are_one_computation():
    s = sample_2pl(30, 8, seed=2)
    items = torch.tensor([[0, 3, 5], [1, 2, 7]])
    answers = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    query = torch.tensor([[1, 2], [0, 6]])
    ceiling = s.posterior_predictive(items, answers, None, query)
    via_2pl = irt.posterior_predictive_batch(s.a[:, 0], s.b, items, answers, None, query)
    torch.testing.assert_close(ceiling, via_2pl, atol=1e-6, rtol=0)


def test_eap_predict_by_group_with_one_group_is_eap_predict():
    s = sample_2pl(200, 10, seed=5)
    fitted = irt.fit_2pl_by_group(s.responses, ["all"] * 10)
    params = irt.fit_2pl(s.responses)
    items, answers, query = torch.tensor([[0, 4], [2, 9]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1], [3]])
    torch.testing.assert_close(irt.eap_predict_by_group(fitted, 10, items, answers, None, query),
                               irt.eap_predict(params, items, answers, None, query))
    with pytest.raises(ValueError, match="groups has 3 labels"):
        irt.fit_2pl_by_group(s.responses, ["a", "b", "c"])
