"""Checks for chapter 09, sections 3-4 (fairness audit, interpretability).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer. Both checks draw fresh random inputs at each
call and reject an answer that calls the implementation the exercise asks for.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import as_number, as_tensor, call as _call, fail, fresh_rng, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

__all__ = ["check_calibration_gap", "check_support_jacobian"]


# ------------------------------------------------------------------------------------ exercise 4

def _audit_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh answers of a large group and a small one whose answers run below its predictions."""
    rng = fresh_rng()
    n_big, n_small = int(rng.integers(250, 400)), int(rng.integers(40, 80))
    groups = rng.permutation(np.array(["F"] * n_big + ["M"] * n_small))
    p = rng.uniform(0.05, 0.95, len(groups))
    y = (rng.random(len(groups)) < np.where(groups == "M", np.clip(p - 0.15, 0, 1), p)).astype(float)
    return y, p, groups


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Private reference: Σ_b (n_b / n) |mean y − mean p| over equal-width bins of p on [0, 1]."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(np.mean(which == b) * abs(y[which == b].mean() - p[which == b].mean())
                     for b in range(bins) if np.any(which == b)))


def check_calibration_gap(fn: Callable | None) -> bool:
    """Exercise 4 (chapter 09, section 3): ``fn(y, p, groups) -> float``, the ECE gap.

    The gap is the largest minus the smallest per-group ECE.

    Right: 10 equal-width bins of p on [0, 1] per group, ECE = Σ_bins (n_bin / n) |mean y − mean p|,
    then max over groups − min over groups (what ``MetricFrame(...).difference()`` reports).
    """
    from fairlearn.metrics import MetricFrame

    from course_lib import fairness

    if fn is None:
        return _todo("define calibration_gap(y, p, groups) and pass it to the check")
    forbid_calls(fn, {"course_lib.fairness.metric_frame": fairness.metric_frame,
                      "course_lib.fairness.group_metrics": fairness.group_metrics,
                      "course_lib.fairness.gap_difference": fairness.gap_difference,
                      "fairlearn.metrics.MetricFrame": MetricFrame},
                 "the per-group ECEs and their gap (metrics.expected_calibration_error is allowed)")
    y, p, groups = _audit_data()
    sizes = {g: int((groups == g).sum()) for g in ("F", "M")}
    got = _call(fn, f"{len(y)} answers in groups F ({sizes['F']}) and M ({sizes['M']})", y.copy(), p.copy(), groups.copy())
    if got is None:
        return _todo("your function returns None; return the gap as a number")
    eces = [_ece(y[groups == g], p[groups == g]) for g in ("F", "M")]
    want, overall = max(eces) - min(eces), _ece(y, p)
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

#: Automatic differentiation: exercise 5 asks for the closed form, not for a Jacobian through autograd.
_AUTOGRAD = {"torch.func.grad": torch.func.grad, "torch.func.vjp": torch.func.vjp, "torch.func.jacrev": torch.func.jacrev,
             "torch.func.jacfwd": torch.func.jacfwd, "torch.autograd.grad": torch.autograd.grad,
             "torch.autograd.backward": torch.autograd.backward,
             "torch.autograd.functional.jacobian": torch.autograd.functional.jacobian}


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
    forbid_calls(fn, {"course_lib.interpret.support_gradient": interpret.support_gradient,
                      "course_lib.interpret.support_attributions": interpret.support_attributions,
                      "course_lib.interpret.adapted_probability": interpret.adapted_probability,
                      "course_lib.algorithms.MAML": MAML, **_AUTOGRAD},
                 "the closed form of ∂p_q/∂y_k")
    rng = fresh_rng()
    n_items, k, n_query = int(rng.integers(7, 12)), int(rng.integers(3, 7)), int(rng.integers(1, 3))
    a = torch.tensor(rng.uniform(0.4, 2.0, n_items), dtype=torch.float32)
    d = torch.tensor(rng.normal(0, 1, n_items), dtype=torch.float32)
    theta0, alpha = float(rng.normal(0, 0.5)), float(rng.uniform(0.5, 2.0))
    order = torch.tensor(rng.permutation(n_items))
    xs, xq = order[:k], order[k:k + n_query]
    ys = torch.tensor(rng.integers(0, 2, k), dtype=torch.float32)
    ys[0] = 1.0 - ys[-1]                        # both a 'yes' and a 'no' among the support answers
    model = MetaIRT(n_items, dims=1)
    with torch.no_grad():
        model.item_a.copy_(a[:, None])
        model.item_d.copy_(d)
        model.ability.fill_(theta0)
    want = interpret.support_gradient(MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]), xs, ys, xq)
    got = _call(fn, f"a, d of {n_items} items, theta0={theta0:.3f}, alpha={alpha:.3f}, K={k} support answers, "
                f"{n_query} query items", a.clone(), d.clone(), theta0, alpha, xs.clone(), ys.clone(), xq.clone())
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
