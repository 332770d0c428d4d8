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
