"""Checks for chapter 06 (personalized learning-resource recommendation) exercises.

Each check returns True with a PASS message for a right answer, returns False with a "fill me in"
message while the answer is still the placeholder ``None`` (so the notebook runs top to bottom),
and raises :class:`course_lib.exercises.ExerciseError` with a hint for a wrong answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from course_lib.baselines import matrix_factorization as _mf
from course_lib.exercises import as_array, as_number, call, fail, passed, todo
from course_lib.exercises.guard import forbid_calls
from course_lib.metrics import ndcg_at_k

__all__ = ["check_popularity", "check_ndcg", "check_fold_in", "check_posterior_interest", "NDCG_EXAMPLE"]

#: The list of exercise 3: true ratings of a student's query lecturers, and a model's scores.
NDCG_EXAMPLE = {"ratings": [3.0, 5.0, 1.0, 4.0, 2.0], "scores": [4.1, 3.9, 3.5, 3.0, 2.2]}


def check_popularity(popularity: Callable | None) -> bool:
    """Exercise 1: ``popularity(lecturers, ratings, n_lecturers, shrinkage) -> [n_lecturers]`` shrunk means.

    r̂ⱼ = μ + Σᵤ (rᵤⱼ − μ) / (nⱼ + λ), with μ the mean of all ratings; an unrated lecturer gets μ.
    """
    if popularity is None:
        return todo("write popularity(lecturers, ratings, n_lecturers, shrinkage)")
    lect = np.array([0, 0, 0, 1, 2, 2])
    r = np.array([5.0, 4.0, 5.0, 1.0, 2.0, 4.0])
    mu = r.mean()
    want = {lam: np.array([mu + (14 - 3 * mu) / (3 + lam), mu + (1 - mu) / (1 + lam),
                           mu + (6 - 2 * mu) / (2 + lam), mu]) for lam in (0.0, 2.0)}
    for lam, expected in want.items():
        out = call(popularity, f"6 ratings of 4 lecturers, shrinkage={lam}", lect, r, 4, lam)
        if out is None:
            return todo("popularity(...) returns None: fill in its body")
        got = as_array(out, "popularity's result")
        if got.shape != (4,):
            fail(f"return one value per lecturer: expected shape (4,), got {got.shape}")
        if np.isnan(got[3]):
            fail("lecturer 3 has no rating: return μ for it, not NaN (nⱼ = 0 needs care when λ = 0)")
        if lam == 2.0 and np.allclose(got[:3], want[0.0][:3]):
            fail("the result does not change with the shrinkage λ: divide by (nⱼ + λ), not nⱼ")
        if lam == 2.0 and np.allclose(got[:3], [r[lect == j].sum() / (np.sum(lect == j) + lam) for j in range(3)]):
            fail("you shrank towards 0: shrink the *offsets* rᵤⱼ − μ and add μ back")
        if not np.allclose(got, expected, atol=1e-6):
            fail(f"with λ = {lam} expected {np.round(expected, 4).tolist()}, got {np.round(got, 4).tolist()}")
    return passed("shrunk lecturer means match μ + Σ(r − μ)/(n + λ), unrated lecturers fall back to μ")


def check_ndcg(value: float | None) -> bool:
    """Exercise 3: nDCG@3 of :data:`NDCG_EXAMPLE` computed by hand (gain = rating, log2 discount)."""
    if value is None:
        return todo("compute nDCG@3 of NDCG_EXAMPLE by hand")
    value = as_number(value, "your nDCG@3")
    right = ndcg_at_k(NDCG_EXAMPLE["ratings"], NDCG_EXAMPLE["scores"], k=3)
    r = np.asarray(NDCG_EXAMPLE["ratings"])
    dcg = float((r[:3] / np.log2(np.arange(2, 5))).sum())
    if np.isclose(value, dcg, atol=1e-3):
        fail("that is DCG@3; divide by the ideal DCG@3 (the ratings sorted from best to worst)")
    if not 0 < value <= 1:
        fail(f"nDCG lies in (0, 1]; got {value}")
    if not np.isclose(value, right, atol=1e-3):
        fail("sort the lecturers by the *scores*, take the top 3, sum rating/log2(rank + 1), and divide by "
             "the same sum for the ratings sorted best-first")
    return passed(f"nDCG@3 = {right:.4f}")


def check_fold_in(fold_in: Callable | None) -> bool:
    """Exercise 2: ``fold_in(residuals, reg_bias) -> b_u``: a new student's offset as a ridge estimate.

    ``residuals [K]`` are r − μ − bⱼ on the support set; the answer is Σ residuals / (K + λ_b).
    """
    if fold_in is None:
        return todo("write fold_in(residuals, reg_bias)")
    forbid_calls(fold_in, {"course_lib.baselines.matrix_factorization": _mf,
                           "MatrixFactorization": _mf.MatrixFactorization,
                           "MatrixFactorization.fold_in": _mf.MatrixFactorization.fold_in},
                 "the ridge estimate of the offset")
    rng = np.random.default_rng(random.SystemRandom().randrange(2**63))
    cases = [(rng.normal(0.5, 1.0, size=1), float(rng.uniform(1, 8))),
             (rng.normal(0.3, 1.0, size=int(rng.integers(3, 8))), float(rng.uniform(1, 8))),
             (np.full(20, float(rng.uniform(0.5, 1.5))), float(rng.uniform(1, 8))),
             (rng.normal(0.0, 1.0, size=2), 0.0)]
    for res, lam in cases:
        out = call(fold_in, f"{len(res)} residuals, reg_bias={lam:.3f}", res, lam)
        if out is None:
            return todo("fold_in(...) returns None: fill in its body")
        got = as_number(out, "the offset b_u")
        want = res.sum() / (len(res) + lam)
        if np.isclose(got, res.mean()) and not np.isclose(got, want):
            fail("that is the plain mean residual: with 1 rating it trusts a single noisy rating fully. "
                 "Add the prior: divide the sum by (K + λ_b)")
        if np.isclose(got, res.sum() / lam if lam else np.inf):
            fail("divide by K + λ_b, not by λ_b alone")
        if not np.isclose(got, want, atol=1e-6):
            fail(f"for residuals {np.round(res, 3).tolist()} and λ_b = {lam:.3f} expected {want:.4f}, got {got:.4f}")
    return passed("b_u = Σ residuals / (K + λ_b): one rating moves the offset a little, twenty move it a lot")


def check_posterior_interest(posterior: Callable | None) -> bool:
    """Exercise 4: ``posterior(prior_mean, prior_var, ratings, noise_var) -> E[u | ratings]``.

    One learner's interest u in one domain, prior u ~ 𝒩(m, s²), ratings yₖ = u + εₖ with ε ~ 𝒩(0, σ²):
    E[u | y] = (m/s² + Σ yₖ/σ²) / (1/s² + K/σ²), the one-domain case of ``bayes_scores`` (section 10).
    """
    if posterior is None:
        return todo("write posterior(prior_mean, prior_var, ratings, noise_var)")
    cases = [(0.2, 0.5, np.array([1.0]), 0.25), (0.2, 0.5, np.array([1.0, 0.4, 1.3]), 0.25),
             (-0.1, 2.0, np.array([0.5] * 30), 0.25), (0.3, 0.5, np.array([]), 0.25)]
    for m, s2, y, noise in cases:
        out = call(posterior, f"posterior({m}, {s2}, {y.tolist()}, {noise})", m, s2, y, noise)
        if out is None:
            return todo("posterior(...) returns None: fill in its body")
        got, want = as_number(out, "the posterior mean"), (m / s2 + y.sum() / noise) / (1 / s2 + len(y) / noise)
        if len(y) and np.isclose(got, y.mean()) and not np.isclose(got, want):
            fail("that is the mean rating: it ignores the prior. Weigh the prior mean by 1/s² and the ratings by 1/σ²")
        if np.isnan(got):
            fail("with no ratings the answer is the prior mean m, not NaN")
        if not np.isclose(got, want, atol=1e-6):
            fail(f"prior 𝒩({m}, {s2}), ratings {y.tolist()}, σ² = {noise}: expected {want:.4f}, got {got:.4f}")
    return passed("E[u | y] = (m/s² + Σy/σ²)/(1/s² + K/σ²): the prior wins with one rating, the data with thirty")
