"""course_lib.data.synthetic_learners: the chapter 01 population and its Bayes-optimal ceiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from course_lib.data.responses import responses_checksum
from course_lib.data.synthetic_learners import bayes_predictive, make_learners
from course_lib.tasks import fixed_query_tasks


def _brute_force(features, offset, mean, cov, xs, ys, xq):
    """Posterior predictive by brute force: scipy's adaptive quadrature in 1-D, a dense grid in 2-D."""
    features, offset = features.double().numpy(), offset.double().numpy()
    mean, cov = mean.double().numpy(), cov.double().numpy()
    prec = np.linalg.inv(cov)
    sd = np.sqrt(np.diag(cov))

    def weight(z):  # z [..., dims]: unnormalised prior x likelihood
        d = z - mean
        prior = np.exp(-0.5 * ((d @ prec) * d).sum(-1))
        logits = z @ features[xs].T + offset[xs]
        return prior * np.prod(np.where(ys == 1, 1 / (1 + np.exp(-logits)), 1 / (1 + np.exp(logits))), axis=-1)

    def predict(z):
        return weight(z) / (1 + np.exp(-(z @ features[xq] + offset[xq])))

    if len(mean) == 1:
        a, b = mean[0] - 9 * sd[0], mean[0] + 9 * sd[0]
        num, den = (integrate.quad(lambda v: f(np.array([v])), a, b, epsabs=1e-13, epsrel=1e-11)[0]
                    for f in (predict, weight))
        return num / den
    axes = [np.linspace(m - 9 * s, m + 9 * s, 801) for m, s in zip(mean, sd)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)  # a plain Riemann sum; the spacing cancels
    return predict(grid).sum() / weight(grid).sum()


@pytest.mark.parametrize("dims", [1, 2])
def test_bayes_predictive_matches_brute_force_integration(dims):
    g = torch.Generator().manual_seed(dims)
    n_items = 7
    features = torch.randn(n_items, dims, generator=g, dtype=torch.float64)
    offset = torch.randn(n_items, generator=g, dtype=torch.float64)
    mean = torch.randn(dims, generator=g, dtype=torch.float64) * 0.3
    cov = torch.tensor([[1.3]], dtype=torch.float64) if dims == 1 else torch.tensor([[1.0, 0.4], [0.4, 0.6]],
                                                                                     dtype=torch.float64)
    xs = torch.tensor([[0, 1, 2, 3]])
    ys = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    xq = torch.tensor([[4, 5, 6]])
    ours = bayes_predictive(features, offset, mean, cov, xs, ys, xq, grid_points=81, radius=7.0)
    for j, item in enumerate(xq[0].tolist()):
        ref = _brute_force(features, offset, mean, cov, xs[0].numpy(), ys[0].numpy(), item)
        assert ours[0, j].item() == pytest.approx(ref, abs=2e-6)


def test_bayes_predictive_default_grid_is_converged_on_the_chapters_learners():
    pop = make_learners(40, 80, seed=0)
    tasks = fixed_query_tasks(pop.responses, torch.arange(40), [1, 32], n_query=16, seed=0)
    for k_shot, t in tasks.items():
        args = (pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov, t.x_support, t.y_support, t.x_query)
        coarse = bayes_predictive(*args)  # the default grid
        fine = bayes_predictive(*args, grid_points=41, radius=6.0)
        assert (coarse - fine).abs().max() < 1e-3, k_shot
        # the population's own method is the same function with the true parameters
        assert torch.equal(pop.posterior_predictive(t.x_support, t.y_support, t.x_query), coarse)


def test_bayes_predictive_agrees_with_the_synthetic_irt_ceiling():
    synthetic = pytest.importorskip("course_lib.data.synthetic")
    irt = synthetic.sample_2pl(30, 20, dims=2, correlation=0.3, seed=0)
    xs, ys = torch.arange(6).repeat(30, 1), irt.responses[:, :6]
    xq = torch.arange(6, 20).repeat(30, 1)
    ours = bayes_predictive(irt.a.double(), irt.d.double(), torch.zeros(2), irt.covariance, xs, ys, xq,
                            grid_points=41, radius=5.0)
    theirs = irt.posterior_predictive(xs, ys, None, xq)
    assert (ours - theirs).abs().max() < 1e-4


def test_make_learners_is_seeded_and_follows_its_formula():
    a, b = make_learners(20, 30, seed=7), make_learners(20, 30, seed=7)
    assert torch.equal(torch.nan_to_num(a.responses, 9), torch.nan_to_num(b.responses, 9))
    z = a.learner_params
    logit = z[:, a.skill] + a.loading[None] * z[:, -1:] - a.difficulty[None] + a.offset[None]
    torch.testing.assert_close(a.prob, torch.sigmoid(logit))
    assert a.param_names == ("ability_algebra", "ability_reading", "word_problem_affinity")
    summary = a.summary()
    assert summary["checksum"] == responses_checksum(a.responses) != make_learners(20, 30, seed=8).summary()["checksum"]
    assert summary["missing_rate"] == pytest.approx(float(torch.isnan(a.responses).float().mean()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="missing_rate"):
        make_learners(10, 10, missing_rate=1.5)
    with pytest.raises(ValueError, match="skill_corr"):
        make_learners(10, 10, skill_corr=1.0)
    pop = make_learners(10, 12, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        bayes_predictive(pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov,
                         torch.tensor([[0]]), torch.tensor([[float("nan")]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="x_support and y_support"):
        bayes_predictive(pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov,
                         torch.tensor([[0, 1]]), torch.tensor([[1.0]]), torch.tensor([[1]]))
