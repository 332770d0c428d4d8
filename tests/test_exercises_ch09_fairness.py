"""Chapter 09 (sections 3-4) checks: right answers pass, placeholders report, typical mistakes fail helpfully."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import metrics
from course_lib.exercises import ExerciseError, ch09_fairness as ch09


def right_gap(y, p, groups):
    eces = [metrics.expected_calibration_error(y[groups == g], p[groups == g]) for g in np.unique(groups)]
    return max(eces) - min(eces)


def test_calibration_gap_passes_and_placeholders():
    assert ch09.check_calibration_gap(right_gap) is True
    assert ch09.check_calibration_gap(None) is False
    assert ch09.check_calibration_gap(lambda y, p, g: None) is False


@pytest.mark.parametrize("wrong, match", [
    (lambda y, p, g: metrics.expected_calibration_error(y, p), "pooled"),
    (lambda y, p, g: -right_gap(y, p, g), "min − max"),
    (lambda y, p, g: np.abs(y - p).mean(), "expected a gap"),
    (lambda y, p, g: 1 / 0, "ZeroDivisionError"),
])
def test_calibration_gap_fails_typical_mistakes(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        ch09.check_calibration_gap(wrong)


def right_jacobian(a, d, theta0, alpha, xs, ys, xq):
    phi = theta0 + alpha * (a[xs] * (ys - torch.sigmoid(a[xs] * theta0 + d[xs]))).mean()
    p = torch.sigmoid(a[xq] * phi + d[xq])
    return (p * (1 - p) * a[xq])[:, None] * (alpha * a[xs] / len(xs))[None, :]


def test_support_jacobian_passes_and_placeholders():
    assert ch09.check_support_jacobian(right_jacobian) is True
    assert ch09.check_support_jacobian(None) is False


@pytest.mark.parametrize("wrong, match", [
    (lambda *args: right_jacobian(*args) * len(args[4]), "factor K"),
    (lambda *args: -right_jacobian(*args), "wrong sign"),
    (lambda *args: right_jacobian(*args).T, "shape"),
    (lambda a, d, t, al, xs, ys, xq: right_jacobian(a, d, t, 0.0, xs, ys, xq) + 0.01, "ADAPTED"),
])
def test_support_jacobian_fails_typical_mistakes(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        ch09.check_support_jacobian(wrong)
