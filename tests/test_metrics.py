"""course_lib.metrics: agreement with scikit-learn, the tie-aware counting AUC, and bad input."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from course_lib import metrics


def test_auc_from_counts_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500).astype(float)
    p = np.round(rng.random(500), 1)  # many ties
    uniq, inv = np.unique(p, return_inverse=True)
    got = metrics.auc_from_counts(np.bincount(inv, weights=y), np.bincount(inv, weights=1 - y))
    assert got == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_auc_from_counts_is_nan_without_both_classes_and_batches_leading_dims():
    assert np.isnan(metrics.auc_from_counts(np.array([1.0, 2.0]), np.zeros(2)))
    pos = np.array([[0.0, 1.0], [1.0, 0.0]]); neg = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(metrics.auc_from_counts(pos, neg), [1.0, 0.0])


def test_calibration_error_is_zero_when_calibrated_and_positive_otherwise():
    y = np.array([0, 1] * 50, float)
    assert metrics.expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)


def test_ndcg_hand_computed():
    # relevances 3, 2, 1 ranked as 2, 3, 1: DCG@3 = 2 + 3/log2(3) + 1/2, IDCG = 3 + 2/log2(3) + 1/2
    got = metrics.ndcg_at_k([3, 2, 1], [0.5, 0.9, 0.1], k=3)
    expected = (2 + 3 / np.log2(3) + 0.5) / (3 + 2 / np.log2(3) + 0.5)
    assert got == pytest.approx(expected)


def test_bootstrap_ci_resamples_learners_and_brackets_the_point():
    rng = np.random.default_rng(1)
    groups = [(rng.integers(0, 2, 20), rng.random(20)) for _ in range(30)]
    point, lo, hi = metrics.bootstrap_ci(metrics.mae, groups, n_boot=100)
    assert lo <= point <= hi
    m, mlo, mhi = metrics.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert m == 2.0 and mlo < 2.0 < mhi


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc([0, 1], [0.2, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        metrics.log_loss([], [])
    with pytest.raises(ValueError, match="3 values but the predictions have 2"):
        metrics.mae([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.ndcg_at_k([1], [1])
    with pytest.raises(ValueError, match="no learners"):
        metrics.bootstrap_ci(metrics.mae, [])


def test_ndcg_rows_hand_computed_and_equal_to_ndcg_at_k_with_ties():
    """The vectorised per-row nDCG (chapter 06) is metrics.ndcg_at_k row by row, ties included."""
    y = np.array([[3.0, 5.0, 1.0, 4.0, 2.0]])
    s = np.array([[4.1, 3.9, 3.5, 3.0, 2.2]])
    by_hand = (3 + 5 / np.log2(3) + 1 / 2) / (5 + 4 / np.log2(3) + 3 / 2)
    assert np.isclose(metrics.ndcg_at_k_rows(y, s, 3)[0], by_hand)
    assert np.isclose(metrics.ndcg_at_k(y[0], s[0], 3), by_hand)
    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, (200, 10)).astype(float)
    s = rng.normal(size=(200, 10))
    s[:20] = 3.0                                          # constant predictions: all tied
    s[20:40] = np.round(s[20:40])                         # some ties
    got = metrics.ndcg_at_k_rows(y, s, 3)
    want = [metrics.ndcg_at_k(y[i], s[i], 3) for i in range(200)]
    assert np.allclose(got, want)
    with pytest.raises(ValueError, match="students, n"):
        metrics.ndcg_at_k_rows(y[0], s[0])


def test_pooled_bootstrap_auc_matches_sklearn_and_resamples_learners():
    """(was tests/test_cat.py's pooled_auc_ci test) exact counting path, no score bins."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    p = np.round(np.clip(0.3 * y + rng.random(600) * 0.7, 0, 1), 2)    # rounded: ties
    learner = np.repeat(np.arange(60), 10)
    m = metrics.pooled_bootstrap(y, p, learner, n_boot=100)
    auc, lo, hi = m["auc"], m["auc_lo"], m["auc_hi"]
    assert auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert lo < auc < hi
    with pytest.raises(ValueError, match="same length"):
        metrics.pooled_bootstrap(y, p[:-1], learner)


def test_pooled_bootstrap_equals_bootstrap_ci():
    """(was tests/test_cold_start.py's pooled_metrics test) the fast path = the generic bootstrap."""
    rng = np.random.default_rng(0)
    learner = np.repeat(np.arange(25), 12)
    p = np.round(rng.random(len(learner)), 2)
    y = (rng.random(len(learner)) < p).astype(float)
    m = metrics.pooled_bootstrap(y, p, learner, n_boot=60, seed=5, score_bins=4096)
    groups = [(y[learner == i], p[learner == i]) for i in range(25)]
    point, lo, hi = metrics.bootstrap_ci(metrics.auc, groups, n_boot=60, seed=5)
    assert m["auc"] == pytest.approx(metrics.auc(y, p)) == pytest.approx(point)
    assert m["auc_lo"] == pytest.approx(lo) and m["auc_hi"] == pytest.approx(hi)
    assert m["logloss"] == pytest.approx(metrics.log_loss(y, p))
    _, llo, lhi = metrics.bootstrap_ci(metrics.log_loss, groups, n_boot=60, seed=5)
    assert m["logloss_lo"] == pytest.approx(llo, abs=1e-6) and m["logloss_hi"] == pytest.approx(lhi, abs=1e-6)


def test_score_bins_move_the_interval_by_less_than_the_bound():
    rng = np.random.default_rng(1)
    learner = np.repeat(np.arange(40), 30)
    p = rng.random(len(learner))                                         # 1200 distinct scores
    y = (rng.random(len(learner)) < p).astype(float)
    exact = metrics.pooled_bootstrap(y, p, learner, n_boot=50, seed=2)
    binned = metrics.pooled_bootstrap(y, p, learner, n_boot=50, seed=2, score_bins=64)
    assert binned["auc"] == exact["auc"]                                 # the point estimate stays exact
    for key in ("auc_lo", "auc_hi"):
        assert abs(binned[key] - exact[key]) <= 1 / (2 * 64)
        assert binned[key] != exact[key]                                 # the bins did merge scores


def test_log_loss_equals_sklearn():
    from sklearn.metrics import log_loss as sk_log_loss
    rng = np.random.default_rng(3)
    p = np.r_[rng.random(200), 0.0, 1.0]                                 # clipped at the ends
    y = (rng.random(202) < 0.5).astype(float)
    assert metrics.log_loss(y, p) == pytest.approx(sk_log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1]),
                                                   rel=1e-12)


def test_learner_resamples_counts_and_proportion_ci_and_censored_median():
    w = metrics.learner_resamples(7, 5, seed=0)
    assert w.shape == (5, 7) and (w.sum(1) == 7).all()
    draws = np.random.default_rng(0)
    assert (w[0] == np.bincount(draws.integers(0, 7, 7), minlength=7)).all()
    m, lo, hi = metrics.proportion_ci([True, False, True, True])
    assert m == 0.75 and lo < m < hi and hi - m == pytest.approx(1.959964 * np.sqrt(0.75 * 0.25 / 4), rel=1e-6)
    assert metrics.censored_median([1.0, 2.0, np.nan]) == 2.0
    assert np.isnan(metrics.censored_median([1.0, np.nan, np.nan]))


def test_bootstrap_mean_ci_paired_differences_and_r_squared():
    from course_lib.metrics import bootstrap_mean_ci, paired_differences, r_squared

    rng = np.random.default_rng(0)
    v = rng.normal(0.3, 1.0, 400)
    m, lo, hi = bootstrap_mean_ci(v, n_boot=500)
    assert m == pytest.approx(v.mean()) and lo < m < hi
    assert hi - lo == pytest.approx(2 * 1.96 * v.std() / np.sqrt(v.size), rel=0.2)  # ≈ the normal interval
    a = rng.normal(1.0, 0.5, 200)
    rows = paired_differences({"a": a, "b": a - 0.1, "c": a + 0.2}, ("a", "missing"), n_boot=200)
    assert [(r["method"], r["versus"]) for r in rows] == [("b", "a"), ("c", "a")]
    assert rows[0]["diff"] == pytest.approx(-0.1) and rows[0]["lo"] == pytest.approx(-0.1)  # constant difference
    y = rng.normal(0, 1, 100)
    assert r_squared(y, y) == 1.0 and r_squared(y, np.full(100, y.mean())) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_mean_ci([1.0])
    with pytest.raises(ValueError, match="constant"):
        r_squared(np.ones(3), np.zeros(3))


def test_paired_auc_difference_is_the_difference_with_a_paired_ci():
    rng = np.random.default_rng(0)
    learner = np.repeat(np.arange(40), 10)
    y = (rng.random(400) < 0.5).astype(float)
    p_a = np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(400), 0.01, 0.99)
    p_b = np.clip(p_a + 0.1 * rng.standard_normal(400), 0.01, 0.99)
    d = metrics.paired_auc_difference(y, p_a, p_b, learner, n_boot=200)
    assert abs(d["diff"] - (metrics.auc(y, p_a) - metrics.auc(y, p_b))) < 1e-12
    assert d["diff_lo"] <= d["diff"] <= d["diff_hi"]
    same = metrics.paired_auc_difference(y, p_a, p_a, learner, n_boot=50)
    assert same["diff"] == same["diff_lo"] == same["diff_hi"] == 0.0   # paired: no noise from the resampling
    with pytest.raises(ValueError, match="same length"):
        metrics.paired_auc_difference(y, p_a[:-1], p_b, learner)


def test_row_auc_matches_sklearn_per_row_and_skips_masked_and_one_class_rows():
    rng = np.random.default_rng(0)
    y = (rng.random((6, 12)) < 0.5).astype(float)
    s = np.round(rng.normal(size=(6, 12)), 1)  # ties
    mask = rng.random((6, 12)) < 0.8
    y[5] = 1.0  # one class only: NaN
    out = metrics.row_auc(y, s, mask)
    for i in range(5):
        assert out[i] == pytest.approx(roc_auc_score(y[i, mask[i]], s[i, mask[i]]))
    assert np.isnan(out[5])
    with pytest.raises(ValueError, match="shape"):
        metrics.row_auc(y, s[:, :3])
