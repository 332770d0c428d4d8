"""The chapter 01 study: schema of run(), split by learner, the Bayes ceiling, the shared inner loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from course_lib.algorithms import MAML
from course_lib.data.responses import split_learners
from course_lib.experiments import personalization as P
from course_lib.metrics import auc, log_loss
from course_lib.tasks import TaskBatch

TINY = dict(n_learners=200, n_items=40, k_shots=(1, 4), n_query=8, maml_iterations=12, maml_meta_batch=8,
            pretrain_steps=30, leakage_steps=30, grid_points=11, alpha_grid=(0.3, 1.0), steps_grid=(1, 2),
            n_examples=3)


@pytest.fixture(scope="module")
def tiny():
    return P.run(progress=False, device="cpu", **TINY)


def test_run_returns_the_documented_schema(tiny):
    assert set(tiny) == {"config", "device", "population", "split", "metrics", "per_learner_log_loss",
                         "hyperparameters", "histories", "theta", "leakage", "objective_slice", "examples",
                         "seconds"}
    ks = list(TINY["k_shots"])
    assert set(tiny["metrics"]) == set(P.METHODS) | {"oracle"}
    for method, by_k in tiny["metrics"].items():
        assert list(by_k) == ks
        for k in ks:
            assert set(by_k[k]) == {"log_loss", "accuracy", "auc", "rmse_to_truth"}
            for name, (mean, lo, hi) in by_k[k].items():
                assert math.isfinite(mean) and lo <= mean <= hi, (method, k, name)
    for k in ks:  # the oracle knows the true probabilities; nothing can be closer to them
        assert tiny["metrics"]["oracle"][k]["rmse_to_truth"][0] == 0.0
        assert tiny["metrics"]["global"][k] == tiny["metrics"]["global"][ks[0]]  # global ignores K
    n_test = tiny["split"]["test"]
    assert all(len(tiny["per_learner_log_loss"][m][k]) == n_test for m in P.METHODS for k in ks)
    for name in ("scratch", "fine_tune", "maml"):
        for k in ks:
            h = tiny["hyperparameters"][name][k]
            assert h["alpha"] in TINY["alpha_grid"] and h["steps"] in TINY["steps_grid"]
    # MAML runs fine-tuning's inner loop: only θ differs
    assert all(tiny["hyperparameters"]["maml"][k]["alpha"] == tiny["hyperparameters"]["fine_tune"][k]["alpha"]
               for k in ks)
    sl = tiny["objective_slice"]
    assert len(sl["t"]) == len(sl["pretraining_objective"]) == len(sl["meta_objective"])
    ex = tiny["examples"]
    assert len(ex["learner"]) == 3 and set(ex["pred"]) == set(P.METHODS)
    assert np.array(ex["pred"]["maml"][4]).shape == np.array(ex["truth"]).shape
    json.dumps(P._jsonable(tiny))  # the CLI's --json output


def test_split_by_learner_has_no_leakage(tiny):
    assert tiny["split"]["learners_in_two_splits"] == 0
    assert tiny["leakage"]["learner_split"]["test_learners_seen_in_training"] == 0
    leak = tiny["leakage"]["interaction_split"]
    assert leak["test_learners_seen_in_training"] == leak["test_learners"] > 0
    split = split_learners(500, (0.6, 0.2, 0.2), seed=3)
    sets = [set(v.tolist()) for v in split.values()]
    assert sum(map(len, sets)) == 500 and set().union(*sets) == set(range(500))


def test_fixed_query_tasks_never_mix_support_query_or_missing():
    pop = P.make_learners(60, 40, missing_rate=0.2, seed=1)
    learners = torch.arange(10, 60)
    tasks = P.fixed_query_tasks(pop.responses, learners, [1, 4, 8], n_query=6, seed=0)
    for k, t in tasks.items():
        assert t.x_support.shape == (50, k) and t.x_query.shape == (50, 6)
        rows = pop.responses[learners]
        assert not torch.isnan(rows.gather(1, t.x_support)).any()
        assert not torch.isnan(rows.gather(1, t.x_query)).any()
        for i in range(50):
            assert not set(t.x_support[i].tolist()) & set(t.x_query[i].tolist())
        assert torch.equal(t.x_query, tasks[1].x_query)  # one fixed query set per learner
        assert torch.equal(t.x_support[:, :1], tasks[1].x_support)  # nested support sets


def test_split_by_interaction_puts_every_learner_on_both_sides():
    pop = P.make_learners(50, 40, seed=2)
    train, test = P.split_by_interaction(pop.responses, 0.2, seed=0)
    answered = ~torch.isnan(pop.responses)
    assert not (train & test).any() and torch.equal(train | test, answered)
    assert (train.any(1) & test.any(1)).all()


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
    ours = P.bayes_predictive(features, offset, mean, cov, xs, ys, xq, grid_points=81, radius=7.0)
    for j, item in enumerate(xq[0].tolist()):
        ref = _brute_force(features, offset, mean, cov, xs[0].numpy(), ys[0].numpy(), item)
        assert ours[0, j].item() == pytest.approx(ref, abs=2e-6)


def test_bayes_predictive_default_grid_is_converged_on_the_chapters_learners():
    pop = P.make_learners(40, 80, seed=0)
    tasks = P.fixed_query_tasks(pop.responses, torch.arange(40), [1, 32], n_query=16, seed=0)
    for k, t in tasks.items():
        args = (pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov, t.x_support, t.y_support, t.x_query)
        coarse = P.bayes_predictive(*args)  # the default grid
        fine = P.bayes_predictive(*args, grid_points=41, radius=6.0)
        assert (coarse - fine).abs().max() < 1e-3, k


def test_bayes_predictive_agrees_with_the_synthetic_irt_ceiling():
    synthetic = pytest.importorskip("course_lib.data.synthetic")
    irt = synthetic.sample_2pl(30, 20, dims=2, correlation=0.3, seed=0)
    xs, ys = torch.arange(6).repeat(30, 1), irt.responses[:, :6]
    xq = torch.arange(6, 20).repeat(30, 1)
    ours = P.bayes_predictive(irt.a.double(), irt.d.double(), torch.zeros(2), irt.covariance, xs, ys, xq,
                              grid_points=41, radius=5.0)
    theirs = irt.posterior_predictive(xs, ys, None, xq)
    assert (ours - theirs).abs().max() < 1e-4


def test_per_learner_metrics_equal_course_lib_metrics():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 10, generator=g)
    y = (torch.rand(6, 10, generator=g) < 0.5).float()
    y[0] = 1.0  # one class only -> AUC is NaN
    p[1, :5] = 0.5  # ties
    out = P.per_learner_metrics(p, y, p)
    for i in range(6):
        assert out["log_loss"][i] == pytest.approx(log_loss(y[i], p[i]), rel=1e-9)
        expected = auc(y[i], p[i])
        assert (math.isnan(expected) and math.isnan(out["auc"][i])) or out["auc"][i] == pytest.approx(expected)
    assert (out["rmse_to_truth"] == 0).all()


def test_pretraining_loss_from_counts_is_the_pooled_cross_entropy():
    pop = P.make_learners(50, 20, seed=4)
    rows = torch.arange(50)
    model = P.LearnerModel(pop.public_features, seed=1)
    hist = P.pretrain(model, pop.responses, rows, steps=1, lr=1e-12, progress=False)
    r, j = torch.nonzero(~torch.isnan(pop.responses), as_tuple=True)
    with torch.no_grad():
        pooled = torch.nn.functional.binary_cross_entropy_with_logits(model(j), pop.responses[r, j])
    assert hist["loss"][0] == pytest.approx(pooled.item(), rel=1e-5)


def test_fine_tuning_and_maml_run_the_same_inner_loop():
    pop = P.make_learners(30, 30, seed=5)
    model = P.LearnerModel(pop.public_features, seed=2)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    batch = P.fixed_query_tasks(pop.responses, torch.arange(30), [4], n_query=5, seed=0)[4]
    phi = P.adapt_path(model, theta, batch, alpha=0.7, checkpoints=[3], adapt=P.ADAPT)[3]
    maml = MAML(model, loss="bce", alpha=0.7, steps=3, adapt=P.ADAPT)
    ref = maml.adapt_batch(batch)
    for k in phi:
        torch.testing.assert_close(phi[k], ref[k])
    assert not torch.equal(phi["head.weight"][0], theta["head.weight"])
    torch.testing.assert_close(phi["embed.weight"][0], theta["embed.weight"])


def test_make_learners_is_seeded_and_follows_its_formula():
    a, b = P.make_learners(20, 30, seed=7), P.make_learners(20, 30, seed=7)
    assert torch.equal(torch.nan_to_num(a.responses, 9), torch.nan_to_num(b.responses, 9))
    z = a.learner_params
    logit = z[:, a.skill] + a.loading[None] * z[:, -1:] - a.difficulty[None] + a.offset[None]
    torch.testing.assert_close(a.prob, torch.sigmoid(logit))
    assert a.param_names == ("ability_algebra", "ability_reading", "word_problem_affinity")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="missing_rate"):
        P.make_learners(10, 10, missing_rate=1.5)
    with pytest.raises(ValueError, match="skill_corr"):
        P.make_learners(10, 10, skill_corr=1.0)
    pop = P.make_learners(10, 12, seed=0)
    with pytest.raises(ValueError, match="lower K or n_query"):
        P.fixed_query_tasks(pop.responses, torch.arange(10), [8], n_query=8)
    with pytest.raises(ValueError, match="k_shots"):
        P.fixed_query_tasks(pop.responses, torch.arange(10), [0], n_query=2)
    with pytest.raises(ValueError, match="NaN"):
        P.bayes_predictive(pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov,
                           torch.tensor([[0]]), torch.tensor([[float("nan")]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="x_support and y_support"):
        P.bayes_predictive(pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov,
                           torch.tensor([[0, 1]]), torch.tensor([[1.0]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="unknown setting"):
        P.run(progress=False, n_learnerz=10)
    with pytest.raises(ValueError, match="add items, lower K"):
        P.run(progress=False, k_shots=(64,))
    with pytest.raises(ValueError, match="test_fraction"):
        P.split_by_interaction(pop.responses, 1.0)
    with pytest.raises(ValueError, match="share one"):
        P.per_learner_metrics(torch.rand(2, 3), torch.rand(2, 4), torch.rand(2, 3))
    with pytest.raises(ValueError, match="checkpoints"):
        P.adapt_path(P.LearnerModel(pop.public_features), {}, TaskBatch(*(torch.zeros(1, 1),) * 4),
                     alpha=0.1, checkpoints=[])
    with pytest.raises(SystemExit):
        P.main(["--set", "nonsense=1"])
