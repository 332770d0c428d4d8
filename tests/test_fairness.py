"""course_lib.fairness and the chapter 09 audit study: MetricFrame agreement, gaps, CIs, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import fairness, metrics
from course_lib.experiments import fairness as study
from course_lib.models.meta_irt import MetaIRTConfig, train_meta_irt
from course_lib.tasks import learner_folds


def fake(n_learners: int = 40, per: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    learner = np.repeat(np.arange(n_learners), per)
    groups = np.where(learner % 4 == 0, "M", "F")
    y = rng.integers(0, 2, len(learner)).astype(float)
    p = np.clip(0.5 * y + 0.5 * rng.random(len(y)) + 0.1 * (groups == "M"), 0, 1)
    return y, p, groups, learner


def test_group_metrics_agree_with_metricframe_and_direct_computation():
    y, p, g, learner = fake()
    table = fairness.group_metrics(y, p, g, learner, n_boot=30)
    mf = fairness.metric_frame(y, p, g)
    for grp in ("F", "M"):
        got = table[(table.group == grp)].set_index("metric")["value"]
        assert got["auc"] == pytest.approx(metrics.auc(y[g == grp], p[g == grp]))
        assert got["ece"] == pytest.approx(metrics.expected_calibration_error(y[g == grp], p[g == grp]))
        assert got["mae"] == pytest.approx(mf.by_group.loc[grp, "mae"])
    gap = table[table.group == "gap"].set_index("metric")["value"]
    assert np.allclose(gap.to_numpy(), mf.difference().to_numpy())
    assert (table.lo <= table.value + 1e-12).all() and (table.value <= table.hi + 1e-12).all()
    assert table.set_index("group").loc["M", "n_learners"].iloc[0] == 10


def test_bootstrap_by_group_matches_metricframe_on_a_resample():
    """The resamples use the metric functions directly; they must equal MetricFrame on the same rows."""
    y, p, g, _ = fake()
    labels = np.unique(g)
    direct = fairness._by_group(y[:300], p[:300], g[:300], labels, fairness.BINARY_METRICS)
    mf = fairness.metric_frame(y[:300], p[:300], g[:300]).by_group.loc[labels].to_numpy()
    np.testing.assert_allclose(direct, mf)


def test_gap_difference_of_a_method_with_itself_is_zero_and_detects_a_widened_gap():
    y, p, g, learner = fake()
    same = fairness.gap_difference(y, p, p, g, learner, n_boot=20)
    assert np.allclose(same[["diff", "lo", "hi"]].to_numpy(), 0)
    worse = np.where(g == "M", 0.5, p)                   # uninformative for one group only
    diff = fairness.gap_difference(y, worse, p, g, learner, n_boot=50).set_index("metric")
    assert diff.loc["mae", "diff"] > 0 and diff.loc["mae", "lo"] > 0


def test_missing_group_column_lists_the_available_columns():
    frame = pd.DataFrame({"Gender": ["F", "M"], "Anger": [20, 30]})
    with pytest.raises(ValueError, match=r"'gender' is not in the data; available columns: \['Anger', 'Gender'\]"):
        fairness.require_column(frame, "gender")
    with pytest.raises(ValueError, match="missing values"):
        fairness.require_column(pd.DataFrame({"Gender": ["F", None]}), "Gender")
    with pytest.raises(ValueError, match="available columns"):
        study.run(study.Config(parts=("verbagg",), group="sex", k_shots=(1,), folds=2, methods=("item_mean",),
                               n_boot=0), progress=False, device="cpu")


def test_bad_flat_input_is_refused():
    with pytest.raises(ValueError, match="equal length"):
        fairness.group_metrics([1, 0], [0.5], ["a", "b"], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        fairness.group_metrics([1, 0], [0.5, np.nan], ["a", "b"], [0, 1])


def test_balanced_weights_give_every_group_the_same_total():
    w = fairness.balanced_weights(["F", "F", "F", "M"])
    assert torch.allclose(w, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        fairness.balanced_weights([])


def test_learner_weights_restrict_meta_batches_and_are_validated():
    r = (torch.rand(30, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    learners = torch.arange(30)
    only_first = torch.zeros(30)
    only_first[:3] = 1.0
    seen = []
    import course_lib.models.meta_irt as meta_irt
    original = meta_irt.learner_tasks

    def spy(responses, k_shot, ix, **kw):
        seen.append(ix.clone())
        return original(responses, k_shot, ix, **kw)

    meta_irt.learner_tasks = spy
    try:
        train_meta_irt("maml", r, learners, 2, MetaIRTConfig(meta_batch=8), iterations=3, progress=False,
                       learner_weights=only_first)
    finally:
        meta_irt.learner_tasks = original
    assert set(torch.cat(seen).tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="learner_weights must be 30"):
        train_meta_irt("maml", r, learners, 2, iterations=1, progress=False, learner_weights=torch.ones(5))


def test_learner_folds_partition_the_learners():
    folds = learner_folds(11, 3, seed=1)
    assert sorted(torch.cat(folds).tolist()) == list(range(11))
    assert {len(f) for f in folds} <= {3, 4}
    with pytest.raises(ValueError, match="n_folds"):
        learner_folds(5, 1)


def test_study_runs_on_a_tiny_config_and_compares_gaps():
    cfg = study.Config(parts=("verbagg",), k_shots=(3,), folds=2, methods=("item_mean", "maml", "maml_balanced"),
                       n_boot=5, meta=MetaIRTConfig(iterations=3, warm_iterations=1, meta_batch=16))
    res = study.run(cfg, progress=False, device="cpu")
    t = res.table()
    assert set(t.group) == {"F", "M", "gap", "all"}
    assert t[(t.group == "all") & (t.metric == "auc")].n_learners.eq(316).all()
    pairs = pd.DataFrame(res.details["paired"])
    assert {("maml", "item_mean"), ("maml_balanced", "maml")} <= set(zip(pairs.method, pairs.versus))
