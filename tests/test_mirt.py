"""Tests for course_lib.baselines.mirt (multidimensional 2PL, EAP) and the simulated ceiling population."""

import math

import numpy as np
import pytest
import torch

from course_lib.baselines import irt, mirt
from course_lib.data.synthetic import sample_2pl, sample_like


@pytest.fixture(scope="module")
def two_dim():
    return sample_2pl(800, 8, dims=2, correlation=0.0, missing_rate=0.1, seed=5)


def test_grid_integrates_the_normal_moments():
    for dims in (1, 2, 3):
        nodes, log_w = mirt.mirt_grid(dims)
        w = log_w.exp()
        assert nodes.shape == (mirt.POINTS_PER_DIM[dims] ** dims, dims)
        assert float(w.sum()) == pytest.approx(1.0)
        torch.testing.assert_close(w @ nodes, torch.zeros(dims, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close((nodes * w[:, None]).T @ nodes, torch.eye(dims, dtype=torch.float64))
        assert float(w @ nodes[:, 0] ** 4) == pytest.approx(3.0)      # E z⁴ = 3, exact for Gauss-Hermite


def test_one_dimension_is_the_2pl_fit(two_dim):
    r = sample_2pl(800, 6, missing_rate=0.1, seed=2).responses
    m = mirt.fit_mirt(r, 1)
    p = irt.fit_2pl(r)
    sign = torch.sign(m.a[:, 0].sum())            # θ → −θ is a symmetry of the 1-D model
    torch.testing.assert_close(sign * m.a[:, 0], p.a, atol=0.03, rtol=0)
    torch.testing.assert_close(m.d, p.d, atol=0.03, rtol=0)


def test_fit_recovers_the_two_dimensional_structure(two_dim):
    fit1, fit2 = mirt.fit_mirt(two_dim.responses, 1), mirt.fit_mirt(two_dim.responses, 2)
    assert fit2.info["loglik_per_learner"] > fit1.info["loglik_per_learner"] + 0.03
    # the maximiser is at least as likely as the true parameters on this sample
    nodes, log_w = mirt.mirt_grid(2)
    truth = mirt.mirt_marginal_log_likelihood(two_dim.responses.double(), two_dim.a.double(), two_dim.d.double(),
                                              nodes, log_w) / two_dim.responses.shape[0]
    assert fit2.info["loglik_per_learner"] >= float(truth) - 1e-3
    torch.testing.assert_close(fit2.d, two_dim.d, atol=0.3, rtol=0)
    share = mirt.explained_variance(fit2)
    assert share.shape == (2,) and float(share.sum()) == pytest.approx(1.0) and share[1] > 0.3


def test_fit_maximises_the_marginal_likelihood(two_dim):
    p = mirt.fit_mirt(two_dim.responses, 2)
    nodes, log_w = mirt.mirt_grid(2)
    r = two_dim.responses.double()
    best = mirt.mirt_marginal_log_likelihood(r, p.a.double(), p.d.double(), nodes, log_w)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        da = 0.05 * torch.randn(p.a.shape, generator=g, dtype=torch.float64)
        assert mirt.mirt_marginal_log_likelihood(r, p.a.double() + da, p.d.double(), nodes, log_w) < best


def test_eap_matches_brute_force_integration():
    """E[θ | answers] on the Gauss-Hermite grid = a fine uniform-grid integral of the 2-D posterior."""
    a = torch.tensor([[1.2, 0.0], [0.3, 0.9], [0.8, -0.5], [0.0, 1.5]])
    d = torch.tensor([0.2, -0.4, 0.7, 0.0])
    params = mirt.MIRTParams(a, d)
    items, answers = torch.tensor([[0, 1, 3]]), torch.tensor([[1.0, 0.0, 1.0]])
    got = mirt.eap_ability_mirt(params, items, answers)[0].double()
    t = torch.linspace(-7, 7, 561, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    logit = grid @ a[[0, 1, 3]].double().T + d[[0, 1, 3]].double()
    y = answers[0].double()
    log_post = (y * torch.nn.functional.logsigmoid(logit) + (1 - y) * torch.nn.functional.logsigmoid(-logit)).sum(1)
    w = torch.softmax(log_post - 0.5 * (grid ** 2).sum(1), 0)
    torch.testing.assert_close(got, w @ grid, atol=2e-3, rtol=0)


def test_eap_predict_shapes_mask_and_prior():
    params = mirt.MIRTParams(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), torch.zeros(3))
    items = torch.tensor([[0, 1], [0, 1]])
    answers = torch.tensor([[1.0, 1.0], [1.0, float("nan")]])
    mask = torch.tensor([[True, True], [False, False]])
    theta = mirt.eap_ability_mirt(params, items, answers, mask)
    torch.testing.assert_close(theta[1], torch.zeros(2))             # no answer: the prior mean
    assert (theta[0] > 0).all()
    p = mirt.eap_predict_mirt(params, items, answers, mask, torch.tensor([[2], [2]]))
    assert p.shape == (2, 1) and p[0, 0] > 0.5 and p[1, 0] == pytest.approx(0.5)


def test_bad_inputs(two_dim):
    with pytest.raises(ValueError, match="dims must be 1..4"):
        mirt.fit_mirt(two_dim.responses, 6)
    with pytest.raises(ValueError, match="too few"):
        mirt.fit_mirt(two_dim.responses[:10], 2)
    with pytest.raises(ValueError, match="engine"):
        mirt.fit_mirt(two_dim.responses, 2, engine="mirt")
    params = mirt.MIRTParams(torch.ones(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="item indices"):
        mirt.eap_ability_mirt(params, torch.tensor([[5]]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="dims must be >= 1"):
        mirt.mirt_grid(0)


def test_fast_fit_is_at_least_as_likely_as_irtorch():
    """irtorch's multidimensional MML (the reference) and the L-BFGS fit: ours reaches a marginal
    likelihood at least as high on the same grid, and the predictions agree."""
    s = sample_2pl(500, 6, dims=2, seed=8)
    fast = mirt.fit_mirt(s.responses, 2)
    ref = mirt.fit_mirt(s.responses, 2, engine="irtorch")
    assert ref.info["engine"] == "irtorch" and ref.a.shape == (6, 2)
    assert fast.info["loglik_per_learner"] >= ref.info["loglik_per_learner"] - 1e-3
    assert fast.info["loglik_per_learner"] - ref.info["loglik_per_learner"] < 0.1


def test_sample_like_keeps_items_and_missing_pattern():
    real = sample_2pl(300, 10, missing_rate=0.2, seed=1).responses
    a = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    sim = sample_like(a, torch.zeros(10), torch.isnan(real), seed=3)
    assert torch.equal(torch.isnan(sim.responses), torch.isnan(real))
    assert sim.dims == 3 and sim.theta.shape == (300, 3) and sim.correlation == 0.0
    with pytest.raises(ValueError, match="need a"):
        sample_like(a, torch.zeros(9), torch.isnan(real))
