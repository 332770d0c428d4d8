"""A linear mixed model on InstEval's covariates: the statistician's baseline for chapter 06.

Derived in chapter 06, section 11. InstEval ships with ``lme4``, whose documentation fits it as a
linear mixed model; this is that model with every covariate the MeLU-style network sees::

    r = μ + uᵢ + bⱼ + Σ_g β_g[c_g] + ε,    uᵢ ~ N(0, σ²/λ_u), bⱼ ~ N(0, σ²/λ_b), β ~ N(0, σ²/λ_c)

with uᵢ the student offset, bⱼ the lecturer offset and β_g one effect per level of each group g:
the item-side covariates (dept, service, lectage), the learner-side one (studage) and every pairwise
interaction of the four (dept × service, studage × dept, ...), so the baseline can express what a
small network on the same codes can. Fitting with fixed variance ratios λ is penalised least
squares (the MAP estimate, the BLUP of the random effects); the λ are chosen on validation students
instead of by REML. A new student is *folded in* exactly as lme4 would predict her: her offset is
the BLUP uᵢ = Σ_{𝒟ᵢˢ} (r − r̂⁰) / (K + λ_u) of her K support residuals against the population
prediction r̂⁰ = μ + bⱼ + Σ β.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from course_lib.data.insteval import CARDINALITY, FEATURES

__all__ = ["COVARIATES", "CovariateMixedModel"]

#: The InstEval covariates (item side: dept, service, lectage; learner side: studage).
COVARIATES: tuple[str, ...] = ("dept", "service", "lectage", "studage")


def _groups(use_lecturer: bool, interactions: bool) -> list[tuple[str, ...]]:
    """The fixed-design groups: lecturer, the covariate main effects and (optionally) their pairs."""
    groups = [("lecturer",)] if use_lecturer else []
    groups += [(c,) for c in COVARIATES]
    return groups + (list(combinations(COVARIATES, 2)) if interactions else [])


class CovariateMixedModel:
    """Student, lecturer and covariate effects by penalised least squares; new students folded in.

    ``reg_student`` λ_u, ``reg_lecturer`` λ_b and ``reg_covariate`` λ_c are the noise-to-prior
    variance ratios. ``use_lecturer=False`` drops bⱼ (covariates only: how much do they explain on
    their own?); ``interactions=False`` keeps the main effects only. Rows are InstEval feature codes
    ``x [n, 5]`` in :data:`course_lib.data.insteval.FEATURES` order.
    """

    def __init__(self, reg_student: float = 5.0, reg_lecturer: float = 5.0, reg_covariate: float = 10.0,
                 use_lecturer: bool = True, interactions: bool = True) -> None:
        if min(reg_student, reg_lecturer, reg_covariate) <= 0:
            raise ValueError(f"the penalties must be > 0, got reg_student={reg_student}, "
                             f"reg_lecturer={reg_lecturer}, reg_covariate={reg_covariate}")
        self.reg_student, self.reg_lecturer, self.reg_covariate = reg_student, reg_lecturer, reg_covariate
        self.groups = _groups(use_lecturer, interactions)
        sizes = [int(np.prod([CARDINALITY[c] for c in g])) for g in self.groups]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])

    # ------------------------------------------------------------------ design

    def _columns(self, x: np.ndarray) -> np.ndarray:
        """Column index of every row's level in every group ``[n, groups]``."""
        cols = []
        for g, start in zip(self.groups, self._offsets):
            code = np.zeros(len(x), dtype=np.int64)
            for c in g:
                code = code * CARDINALITY[c] + x[:, FEATURES.index(c)]
            cols.append(start + code)
        return np.stack(cols, 1)

    def _design(self, x: np.ndarray) -> sp.csr_matrix:
        cols = self._columns(x)
        rows = np.repeat(np.arange(len(x)), cols.shape[1])
        return sp.csr_matrix((np.ones(cols.size), (rows, cols.ravel())), shape=(len(x), int(self._offsets[-1])))

    @staticmethod
    def _check_x(x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(FEATURES) or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"x must be integer codes of shape [n, {len(FEATURES)}] in the order {FEATURES} "
                             f"(course_lib.data.insteval.feature_tensors), got {x.dtype} {x.shape}")
        too_big = [f for i, f in enumerate(FEATURES)
                   if x.size and (x[:, i].min() < 0 or x[:, i].max() >= CARDINALITY[f])]
        if too_big:
            raise ValueError(f"codes out of range for {too_big}; expected 0..CARDINALITY-1 ({CARDINALITY})")
        return x.astype(np.int64)

    # ------------------------------------------------------------------ fit / predict

    def fit(self, x, ratings, students) -> "CovariateMixedModel":
        """Fit μ, uᵢ, bⱼ and β on training ratings: ``x [n, 5]`` codes, ``ratings [n]``, ``students [n]`` ids."""
        x = self._check_x(x)
        r = np.asarray(ratings, dtype=float)
        students = np.asarray(students)
        if r.shape != (len(x),) or students.shape != (len(x),) or np.isnan(r).any():
            raise ValueError(f"ratings and students must be 1-D of length {len(x)} (one per row of x), without NaN")
        _, sid = np.unique(students, return_inverse=True)
        n_students = int(sid.max()) + 1
        design = sp.hstack([sp.csr_matrix((np.ones(len(x)), (np.arange(len(x)), sid)), shape=(len(x), n_students)),
                            self._design(x)]).tocsc()
        penalty = np.concatenate([np.full(n_students, self.reg_student)] +
                                 [np.full(self._offsets[i + 1] - self._offsets[i],
                                          self.reg_lecturer if g == ("lecturer",) else self.reg_covariate)
                                  for i, g in enumerate(self.groups)])
        self.mu = float(r.mean())
        w = spsolve((design.T @ design + sp.diags(penalty.astype(float))).tocsc(), design.T @ (r - self.mu))
        self.student_offsets, self.effects = w[:n_students], w[n_students:]
        fitted = design @ w
        self.variance_shares = self._shares(r, design[:, :n_students] @ self.student_offsets, x, fitted)
        return self

    def _shares(self, r: np.ndarray, student_part: np.ndarray, x: np.ndarray, fitted: np.ndarray) -> dict[str, float]:
        """Variance of each fitted component over the training ratings, as a share of Var(r)."""
        cols = self._columns(x)
        parts = {"student": student_part}
        for i, g in enumerate(self.groups):
            name = "lecturer" if g == ("lecturer",) else "covariates"
            parts[name] = parts.get(name, 0) + self.effects[cols[:, i]]
        parts["residual"] = r - self.mu - fitted
        return {name: float(np.var(v) / np.var(r)) for name, v in parts.items()}

    def population(self, x) -> np.ndarray:
        """r̂⁰ = μ + bⱼ + Σ β for rows ``x [n, 5]``: the prediction for a student we know nothing about."""
        if not hasattr(self, "effects"):
            raise RuntimeError("call fit(x, ratings, students) before predicting")
        cols = self._columns(self._check_x(x))
        return self.mu + self.effects[cols].sum(1)

    def predict_new_x(self, x_support, support_ratings, x_query) -> np.ndarray:
        """Fold in a new student from ``K`` support rows and predict her query rows ``[n_query]``.

        uᵢ = Σ (r − r̂⁰) / (K + λ_u) (0 when K = 0), then r̂ = r̂⁰ + uᵢ.
        """
        y = np.asarray(support_ratings, dtype=float)
        x_support = np.asarray(x_support).reshape(-1, len(FEATURES))
        if y.shape != (len(x_support),) or np.isnan(y).any():
            raise ValueError(f"support ratings must be 1-D, one per support row ({len(x_support)}), without NaN")
        u = (y - self.population(x_support)).sum() / (len(y) + self.reg_student) if len(y) else 0.0
        return self.population(x_query) + u
