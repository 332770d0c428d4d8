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


# ----------------------------------------------------------------------------- the notebook's own solutions
from notebook_solutions import notebook_solutions  # noqa: E402

SOLUTIONS = notebook_solutions("09")


@pytest.mark.parametrize("check, name", [(ch09.check_calibration_gap, "calibration_gap_solution"),
                                         (ch09.check_support_jacobian, "jacobian_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def test_answers_that_call_the_library_are_rejected():
    from course_lib import fairness, interpret
    from course_lib.algorithms import MAML
    from course_lib.models.meta_irt import MetaIRT

    def via_metric_frame(y, p, groups):
        frame = fairness.metric_frame(y, p, groups, {"ece": fairness.BINARY_METRICS["ece"]})
        return float(frame.difference()["ece"])

    def via_support_gradient(a, d, theta0, alpha, xs, ys, xq):
        model = MetaIRT(len(a), dims=1)
        with torch.no_grad():
            model.item_a.copy_(a[:, None])
            model.item_d.copy_(d)
            model.ability.fill_(theta0)
        return interpret.support_gradient(MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]), xs, ys, xq)

    def via_jacrev(a, d, theta0, alpha, xs, ys, xq):
        def p_query(y):
            phi = theta0 + alpha * (a[xs] * (y - torch.sigmoid(a[xs] * theta0 + d[xs]))).mean()
            return torch.sigmoid(a[xq] * phi + d[xq])
        return torch.func.jacrev(p_query)(ys)

    for check, answer, name in [(ch09.check_calibration_gap, via_metric_frame, "metric_frame"),
                                (ch09.check_support_jacobian, via_support_gradient, "(support_gradient|MAML)"),
                                (ch09.check_support_jacobian, via_jacrev, "jacrev")]:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(y, p, groups):
        seen.append(p.copy())
        return right_gap(y, p, groups)

    ch09.check_calibration_gap(recording)
    ch09.check_calibration_gap(recording)
    assert seen[0].shape != seen[1].shape or not np.array_equal(seen[0], seen[1])
