"""The chapter 01 study: the Result it returns, split by learner, the task construction, the per-learner metrics.

The pieces it is built from have their own tests: tests/test_synthetic_learners.py (learners, Bayes
ceiling), tests/test_learner_model.py, tests/test_fine_tuning.py (pretraining, the shared inner loop).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from course_lib.data.responses import split_learners
from course_lib.data.synthetic_learners import make_learners
from course_lib.experiments import common
from course_lib.experiments import personalization as P
from course_lib.metrics import auc, log_loss, per_learner_metrics
from course_lib.tasks import fixed_query_tasks, split_by_interaction

TINY = dict(n_learners=200, n_items=40, k_shots=(1, 4), n_query=8, maml_iterations=12, maml_meta_batch=8,
            pretrain_steps=30, leakage_steps=30, grid_points=11, alpha_grid=(0.3, 1.0), steps_grid=(1, 2),
            n_examples=3)


@pytest.fixture(scope="module")
def tiny():
    return P.run(P.Config(**TINY), progress=False, device="cpu")


def test_run_returns_the_documented_schema(tiny, tmp_path):
    assert set(tiny.details) == {"device", "population", "split", "per_learner_log_loss", "histories", "theta",
                                 "leakage", "objective_slice", "examples", "timings"}
    ks = list(TINY["k_shots"])
    table = tiny.table(["method", "k_shot"])
    assert list(table.index.get_level_values(0).unique()) == list(P.METHODS) + ["oracle"]
    for method in (*P.METHODS, "oracle"):
        assert list(table.loc[method].index) == ks
        for k_shot in ks:
            row = table.loc[(method, k_shot)]
            for name in ("log_loss", "accuracy", "auc", "rmse_to_truth"):
                mean, lo, hi = row[name], row[f"{name}_lo"], row[f"{name}_hi"]
                assert math.isfinite(mean) and lo <= mean <= hi, (method, k_shot, name)
    for k_shot in ks:  # the oracle knows the true probabilities; nothing can be closer to them
        assert table.loc[("oracle", k_shot), "rmse_to_truth"] == 0.0
        scores = [f"{m}{end}" for m in ("log_loss", "accuracy", "auc", "rmse_to_truth") for end in ("", "_lo", "_hi")]
        assert (table.loc[("global", k_shot), scores] == table.loc[("global", ks[0]), scores]).all()  # global ignores K
    n_test = tiny.details["split"]["test"]
    assert all(len(tiny.details["per_learner_log_loss"][m][k]) == n_test for m in P.METHODS for k in ks)
    for name in ("scratch", "fine_tune", "maml"):
        for k_shot in ks:
            h = table.loc[(name, k_shot)]
            assert h["alpha"] in TINY["alpha_grid"] and h["steps"] in TINY["steps_grid"]
    # MAML runs fine-tuning's inner loop: only θ differs
    assert all(table.loc[("maml", k), "alpha"] == table.loc[("fine_tune", k), "alpha"] for k in ks)
    sl = tiny.details["objective_slice"]
    assert len(sl["t"]) == len(sl["pretraining_objective"]) == len(sl["meta_objective"])
    ex = tiny.details["examples"]
    assert len(ex["learner"]) == 3 and set(ex["pred"]) == set(P.METHODS)
    assert np.array(ex["pred"]["maml"][4]).shape == np.array(ex["truth"]).shape
    json.dumps(tiny.to_dict())  # the CLI's --json output
    again = common.load_json(common.save_json(tiny, tmp_path / "ch01.json"))
    assert again.rows == common.json_safe(tiny.rows) and again.config == common.json_safe(tiny.config)


def test_the_study_is_deterministic_and_its_arms_are_a_registry(tiny):
    assert P.METHODS == ("global", "scratch", "fine_tune", "maml", "bayes") == P.ARMS.names()
    with pytest.raises(ValueError, match="unknown method"):
        P.ARMS["mamll"]
    again = P.run(P.Config(**TINY), progress=False, device="cpu")
    assert again.to_dict(timing=False) == tiny.to_dict(timing=False)


def test_split_by_learner_has_no_leakage(tiny):
    assert tiny.details["split"]["learners_in_two_splits"] == 0
    assert tiny.details["leakage"]["learner_split"]["test_learners_seen_in_training"] == 0
    leak = tiny.details["leakage"]["interaction_split"]
    assert leak["test_learners_seen_in_training"] == leak["test_learners"] > 0
    split = split_learners(500, (0.6, 0.2, 0.2), seed=3)
    sets = [set(v.tolist()) for v in split.values()]
    assert sum(map(len, sets)) == 500 and set().union(*sets) == set(range(500))


def test_fixed_query_tasks_never_mix_support_query_or_missing():
    pop = make_learners(60, 40, missing_rate=0.2, seed=1)
    learners = torch.arange(10, 60)
    tasks = fixed_query_tasks(pop.responses, learners, [1, 4, 8], n_query=6, seed=0)
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
    pop = make_learners(50, 40, seed=2)
    train, test = split_by_interaction(pop.responses, 0.2, seed=0)
    answered = ~torch.isnan(pop.responses)
    assert not (train & test).any() and torch.equal(train | test, answered)
    assert (train.any(1) & test.any(1)).all()


def test_per_learner_metrics_equal_course_lib_metrics():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 10, generator=g)
    y = (torch.rand(6, 10, generator=g) < 0.5).float()
    y[0] = 1.0  # one class only -> AUC is NaN
    p[1, :5] = 0.5  # ties
    out = per_learner_metrics(p, y, p)
    for i in range(6):
        assert out["log_loss"][i] == pytest.approx(log_loss(y[i], p[i]), rel=1e-9)
        expected = auc(y[i], p[i])
        assert (math.isnan(expected) and math.isnan(out["auc"][i])) or out["auc"][i] == pytest.approx(expected)
    assert (out["rmse_to_truth"] == 0).all()


def test_bad_inputs_raise_clear_errors():
    pop = make_learners(10, 12, seed=0)
    with pytest.raises(ValueError, match="lower K or n_query"):
        fixed_query_tasks(pop.responses, torch.arange(10), [8], n_query=8)
    with pytest.raises(ValueError, match="k_shots"):
        fixed_query_tasks(pop.responses, torch.arange(10), [0], n_query=2)
    with pytest.raises(ValueError, match="unknown setting"):
        common.parse_setting(P.Config, "n_learnerz=10")
    with pytest.raises(TypeError, match="n_learnerz"):
        P.Config(n_learnerz=10)
    with pytest.raises(ValueError, match="add items, lower K"):
        P.Config(k_shots=(64,))
    with pytest.raises(ValueError, match="alpha_grid"):
        P.Config(alpha_grid=(0.0,))
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_interaction(pop.responses, 1.0)
    with pytest.raises(ValueError, match="share one"):
        per_learner_metrics(torch.rand(2, 3), torch.rand(2, 4), torch.rand(2, 3))
    with pytest.raises(SystemExit):
        P.main(["--set", "nonsense=1"])
