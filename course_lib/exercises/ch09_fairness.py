"""Checks for chapter 09, sections 3-4 (fairness audit, interpretability).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import as_number, as_tensor, call as _call, fail, passed, todo as _todo

__all__ = ["check_calibration_gap", "check_support_jacobian"]


# ------------------------------------------------------------------------------------ exercise 4

def _audit_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    groups = np.array(["F"] * 300 + ["M"] * 60)
    p = rng.uniform(0.05, 0.95, len(groups))
    y = (rng.random(len(groups)) < np.where(groups == "M", np.clip(p - 0.15, 0, 1), p)).astype(float)
    return y, p, groups


def check_calibration_gap(fn: Callable | None) -> bool:
    """Exercise 4 (chapter 09, section 3): ``fn(y, p, groups) -> float``, the ECE gap.

    The gap is the largest minus the smallest per-group ECE.

    Right: 10 equal-width bins of p on [0, 1] per group, ECE = Σ_bins (n_bin / n) |mean y − mean p|,
    then max over groups − min over groups (what ``MetricFrame(...).difference()`` reports).
    """
    from course_lib import fairness

    if fn is None:
        return _todo("define calibration_gap(y, p, groups) and pass it to the check")
    y, p, groups = _audit_data()
    got = _call(fn, "360 answers in groups F (300) and M (60)", y.copy(), p.copy(), groups.copy())
    if got is None:
        return _todo("your function returns None; return the gap as a number")
    want = float(fairness.metric_frame(y, p, groups, {"ece": fairness.BINARY_METRICS["ece"]}).difference()["ece"])
    overall = float(fairness.BINARY_METRICS["ece"](y, p))
    got = as_number(got, "the calibration gap")
    if np.isclose(got, overall, atol=1e-9):
        fail("that is the ECE of everyone pooled; compute the ECE of each group separately, then max − min")
    if np.isclose(got, -want, atol=1e-9):
        fail("the gap is max − min, a non-negative number; you returned min − max")
    if not np.isclose(got, want, atol=1e-6):
        fail(f"expected a gap of {want:.4f}, got {got:.4f}. Bin each group's p into 10 equal bins on [0, 1] and weight "
             "|mean y − mean p| by the bin's share of that group's answers (course_lib.metrics.expected_calibration_error)")
    return passed(f"ECE gap {got:.4f}; the pooled ECE ({overall:.4f}) is one number for everyone and cannot say "
                  "which group carries the miscalibration")


# ------------------------------------------------------------------------------------ exercise 5

_A = torch.tensor([0.8, 1.3, 0.6, 1.9, 1.1, 0.7])
_D = torch.tensor([0.4, -0.3, 1.0, -0.8, 0.1, 0.6])


def check_support_jacobian(fn: Callable | None) -> bool:
    """Exercise 5 (chapter 09, section 4): ``fn(a, d, theta0, alpha, xs, ys, xq) -> [n_query, K]``: ∂p_q/∂y_k after ONE inner step.

    1-D meta-IRT, mean BCE support loss: φ = θ₀ + (α/K) Σ_k a_k (y_k − σ(a_k θ₀ + d_k)), so
    ∂p_q/∂y_k = p_q (1 − p_q) · a_q · α a_k / K with p_q = σ(a_q φ + d_q).
    """
    from course_lib import interpret
    from course_lib.algorithms import MAML
    from course_lib.models.meta_irt import MetaIRT

    if fn is None:
        return _todo("define jacobian(a, d, theta0, alpha, xs, ys, xq) and pass it to the check")
    theta0, alpha = 0.2, 1.5
    xs, ys, xq = torch.tensor([0, 2, 4, 5]), torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([1, 3])
    model = MetaIRT(6, dims=1)
    with torch.no_grad():
        model.item_a.copy_(_A[:, None])
        model.item_d.copy_(_D)
        model.ability.fill_(theta0)
    want = interpret.support_gradient(MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]), xs, ys, xq)
    got = _call(fn, "a, d of 6 items, theta0=0.2, alpha=1.5, K=4 support answers, 2 query items",
                _A.clone(), _D.clone(), theta0, alpha, xs.clone(), ys.clone(), xq.clone())
    if got is None:
        return _todo("your function returns None; return the [n_query, K] matrix")
    got = as_tensor(got, "the Jacobian", dtype=torch.float32)
    if got.shape != want.shape:
        fail(f"return one row per query item and one column per support answer: shape {tuple(want.shape)}, got "
             f"{tuple(got.shape)}")
    if torch.allclose(got, want * len(xs), atol=1e-5):
        fail("too large by a factor K: the support loss is the MEAN over the K answers, so ∂φ/∂y_k = α a_k / K")
    if torch.allclose(got, -want, atol=1e-5):
        fail("wrong sign: a 'yes' (y_k = 1) raises φ when a_k > 0, so ∂φ/∂y_k = +α a_k / K")
    if not torch.allclose(got, want, atol=1e-5):
        fail(f"expected {want.numpy().round(4).tolist()}, got {got.numpy().round(4).tolist()}. Take p_q at the ADAPTED "
             "φ, not at θ₀, and use σ'(z) = p (1 − p)")
    return passed("your closed form equals torch.func's Jacobian through the inner loop (and Captum's saliency)")
