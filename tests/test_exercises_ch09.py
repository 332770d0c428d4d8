"""Chapter 09's exercise checks: the solutions pass, the placeholders report, the usual slips fail."""

from __future__ import annotations

import pytest
import torch

from course_lib.exercises import ExerciseError, ch09


def clip_per_learner(grads, C):
    return grads * (C / grads.norm(dim=1, keepdim=True)).clamp(max=1.0)


def server_average(thetas, sizes):
    return (sizes[:, None] * thetas).sum(0) / sizes.sum()


def per_fedavg_gradient(theta, A, b, alpha):
    phi = theta - alpha * (A @ theta - b)
    return (torch.eye(len(theta), dtype=A.dtype) - alpha * A) @ (A @ phi - b)


def test_solutions_pass():
    assert ch09.check_clip_per_learner(clip_per_learner)
    assert ch09.check_weighted_average(server_average)
    assert ch09.check_per_fedavg_gradient(per_fedavg_gradient)


@pytest.mark.parametrize("check", [ch09.check_clip_per_learner, ch09.check_weighted_average,
                                   ch09.check_per_fedavg_gradient])
def test_placeholders_report_not_filled_in(check, capsys):
    assert check(None) is False and "Not filled in" in capsys.readouterr().out
    assert check(lambda *a: None) is False


@pytest.mark.parametrize("fn, words", [
    (lambda g, C: g * (C / g.norm()), "one norm"),
    (lambda g, C: g * (C / g.norm(dim=1, keepdim=True)), "below C must stay"),
    (lambda g, C: g, "above C"),
])
def test_clip_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch09.check_clip_per_learner(fn)


@pytest.mark.parametrize("fn, words", [
    (lambda t, n: t.mean(0), "plain mean"),
    (lambda t, n: (n[:, None] * t).sum(0), "divide"),
])
def test_average_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch09.check_weighted_average(fn)


@pytest.mark.parametrize("fn, words", [
    (lambda t, A, b, a: A @ (t - a * (A @ t - b)) - b, "first-order"),
    (lambda t, A, b, a: A @ t - b, "FedAvg"),
])
def test_per_fedavg_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch09.check_per_fedavg_gradient(fn)
