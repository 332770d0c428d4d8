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


# ----------------------------------------------------------------------------- the notebook's own solutions
from notebook_solutions import notebook_solutions  # noqa: E402

SOLUTIONS = notebook_solutions("09")


@pytest.mark.parametrize("check, name", [(ch09.check_clip_per_learner, "clip_per_learner_solution"),
                                         (ch09.check_weighted_average, "server_average_solution"),
                                         (ch09.check_per_fedavg_gradient, "per_fedavg_gradient_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def test_answers_that_call_the_library_are_rejected():
    from course_lib.algorithms.private import clip_per_task
    from course_lib.federated.core import aggregate

    def via_clip_per_task(grads, C):
        return clip_per_task({"g": grads}, C)[0]["g"]

    def via_aggregate(thetas, sizes):
        return aggregate([({"w": t}, float(n)) for t, n in zip(thetas, sizes)])["w"]

    def via_autograd(theta, A, b, alpha):
        def f(t):
            return 0.5 * t @ A @ t - b @ t
        return torch.func.grad(lambda t: f(t - alpha * torch.func.grad(f)(t)))(theta)

    for check, answer, name in [(ch09.check_clip_per_learner, via_clip_per_task, "clip_per_task"),
                                (ch09.check_weighted_average, via_aggregate, "aggregate"),
                                (ch09.check_per_fedavg_gradient, via_autograd, "torch.func.grad")]:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(thetas, sizes):
        seen.append(thetas.clone())
        return (sizes[:, None] * thetas).sum(0) / sizes.sum()

    ch09.check_weighted_average(recording)
    ch09.check_weighted_average(recording)
    assert seen[0].shape != seen[1].shape or not torch.equal(seen[0], seen[1])
