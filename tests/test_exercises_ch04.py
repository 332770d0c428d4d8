"""Chapter 04 checks: right answers pass, placeholders report, typical wrong answers fail helpfully."""

from __future__ import annotations

import numpy as np
import pytest
from torch.func import functional_call, grad

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch04


def reptile_step(theta, tasks, alpha, k, beta):
    phis = []
    for A, c in tasks:
        phi = theta.copy()
        for _ in range(k):
            phi = phi - alpha * A @ (phi - c)
        phis.append(phi)
    return theta + beta * (np.mean(phis, axis=0) - theta)


def test_reptile_step_check():
    assert ch04.check_reptile_step(reptile_step) is True
    assert ch04.check_reptile_step(None) is False
    assert ch04.check_reptile_step(lambda *a: None) is False
    wrong = {
        "you returned φ̄ itself": lambda th, ts, a, k, b: reptile_step(th, ts, a, k, 1.0),
        "moved away": lambda th, ts, a, k, b: th - (reptile_step(th, ts, a, k, b) - th),
        "one inner step": lambda th, ts, a, k, b: reptile_step(th, ts, a, 1, b),
        "last task only": lambda th, ts, a, k, b: reptile_step(th, ts[-1:], a, k, b),
        "minima": lambda th, ts, a, k, b: th + b * (np.mean([c for _, c in ts], axis=0) - th),
        "gradient at θ": lambda th, ts, a, k, b: th + b * (np.mean([th - k * a * A @ (th - c) for A, c in ts], 0) - th),
        "same shape": lambda th, ts, a, k, b: np.zeros(3),
        "raised ZeroDivisionError": lambda th, ts, a, k, b: 1 / 0,
        "expected θ": lambda th, ts, a, k, b: reptile_step(th, ts, a, k, b) + 0.1,
    }
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch04.check_reptile_step(fn)


def coeffs(algorithm, k):
    return {"maml": (1, 2 * (k - 1)), "fomaml": (1, k - 1), "reptile": (k, k * (k - 1) / 2)}[algorithm]


def test_coefficients_check():
    assert ch04.check_coefficients(coeffs) is True
    assert ch04.check_coefficients(None) is False
    assert ch04.check_coefficients(lambda a, k: None) is False
    wrong = {
        "SUM of its k step gradients": lambda a, k: (1, coeffs(a, k)[1]) if a == "reptile" else coeffs(a, k),
        "pairs j < i once": lambda a, k: (k, k * (k - 1)) if a == "reptile" else coeffs(a, k),
        "appears once": lambda a, k: (k, coeffs(a, k)[1]) if a == "fomaml" else coeffs(a, k),
        "FOMAML's b": lambda a, k: coeffs("fomaml", k) if a == "maml" else coeffs(a, k),
        "MAML's b": lambda a, k: coeffs("maml", k) if a == "fomaml" else coeffs(a, k),
        "counts minibatches": lambda a, k: (1, 2 * k) if a == "maml" else coeffs(a, k),
        "pair of numbers": lambda a, k: 3,
        "expected": lambda a, k: (k, k * k) if a == "reptile" else coeffs(a, k),
    }
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch04.check_coefficients(fn)


def test_largest_avg_grad_check():
    right = {"largest_avg_grad": "Reptile", "a": 5, "largest_inner_weight": "maml"}
    assert ch04.check_largest_avg_grad(right) is True
    assert ch04.check_largest_avg_grad(None) is False
    assert ch04.check_largest_avg_grad({"largest_avg_grad": None, "a": None, "largest_inner_weight": None}) is False
    cases = [
        ({**right, "largest_avg_grad": "maml"}, "coefficient is 1 for every k"),
        ({**right, "a": 10}, "Reptile's b"),
        ({**right, "a": 1}, "sum of k step gradients"),
        ({**right, "largest_inner_weight": "reptile"}, "Compare b/a"),
        ({**right, "largest_avg_grad": "protonet"}, "name one of"),
        ({"a": 5}, "lacks"),
        ("reptile", "must be a dict"),
    ]
    for answer, match in cases:
        with pytest.raises(ExerciseError, match=match):
            ch04.check_largest_avg_grad(answer)


def reptile_k1(model, theta, x, y, alpha):
    g = grad(lambda p: (functional_call(model, p, (x,)) - y).pow(2).mean())(theta)
    phi = {k: theta[k] - alpha * g[k] for k in theta}
    return {k: theta[k] - phi[k] for k in theta}


def test_reptile_k1_check():
    assert ch04.check_reptile_k1(reptile_k1) is True
    assert ch04.check_reptile_k1(None) is False
    assert ch04.check_reptile_k1(lambda *a: None) is False

    def scaled(s):
        return lambda m, th, x, y, a: {k: s * v for k, v in reptile_k1(m, th, x, y, a).items()}

    wrong = {
        "gradient ∇L\\(θ\\) itself": lambda m, th, x, y, a: reptile_k1(m, th, x, y, 1.0),
        "sign is flipped": scaled(-1.0),
        "adapted parameters": lambda m, th, x, y, a: {k: th[k] - v for k, v in reptile_k1(m, th, x, y, a).items()},
        "should equal α·∇L": scaled(2.0),
        "parameter names": lambda m, th, x, y, a: list(th.values()),
    }
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch04.check_reptile_k1(fn)


# ----------------------------------------------------------------------------- calling the answer
def test_answers_that_call_the_library_are_rejected():
    from course_lib.algorithms import reptile_direction, taylor
    from course_lib.tasks import TaskBatch

    def library_k1(model, theta, x, y, alpha):
        batch = TaskBatch(x[None], y[None], x[None], y[None])
        return reptile_direction(model, theta, batch, loss_fn="mse", alpha=alpha, steps=1)

    cases = [(ch04.check_coefficients, lambda algorithm, steps: taylor.coefficients(algorithm, steps)),
             (ch04.check_largest_avg_grad, lambda k: {"largest_avg_grad": max(
                 taylor.ALGORITHMS, key=lambda a: taylor.coefficients(a, k)[0]), "a": k, "largest_inner_weight": "maml"}),
             (ch04.check_reptile_k1, library_k1),
             (ch04.check_reptile_step, lambda *args: ch04.quadratic_reptile_step(*args))]
    for check, answer in cases:
        with pytest.raises(ExerciseError, match="your answer calls"):
            check(answer)


def test_largest_avg_grad_accepts_a_function_of_k():
    assert ch04.check_largest_avg_grad(lambda k: {"largest_avg_grad": "reptile", "a": k, "largest_inner_weight": "maml"})
    with pytest.raises(ExerciseError, match="Reptile's a for k"):
        ch04.check_largest_avg_grad(lambda k: {"largest_avg_grad": "reptile", "a": 5, "largest_inner_weight": "maml"})
