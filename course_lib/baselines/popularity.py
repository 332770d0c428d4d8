"""Non-personal rating baselines for cold-start recommendation: the global mean and popularity.

Derived in chapter 06, section 2. Both are fitted on the ratings of the meta-train students and
ignore a new student's support set 𝒟ᵢˢ:

* :class:`GlobalMean` predicts μ, the mean training rating, for everything;
* :class:`Popularity` predicts μ + bⱼ with a shrunk lecturer offset bⱼ = Σ (r − μ) / (nⱼ + λ): a
  lecturer with few ratings stays near μ.

Every model has ``fit(students, lecturers, ratings)`` and
``predict_new(support_lecturers, support_ratings, query_lecturers) -> predictions``.
"""

from __future__ import annotations

import numpy as np

from course_lib.data.ratings import validate_new_student, validate_ratings

__all__ = ["GlobalMean", "Popularity"]


class GlobalMean:
    """Predict the mean training rating μ for every lecturer and every student."""

    def fit(self, students, lecturers, ratings) -> "GlobalMean":
        """Store μ = mean rating. Shapes: three 1-D arrays ``[n_ratings]``."""
        _, _, r = validate_ratings(students, lecturers, ratings)
        self.mu = float(r.mean())
        return self

    def predict_new(self, support_lecturers, support_ratings, query_lecturers) -> np.ndarray:
        """μ for each query lecturer ``[n_query]``; the support set is not used."""
        _, _, qi = validate_new_student(support_lecturers, support_ratings, query_lecturers, None)
        return np.full(len(qi), self.mu)


class Popularity:
    """Per-lecturer mean rating shrunk towards μ: r̂ⱼ = μ + Σᵤ(rᵤⱼ − μ) / (nⱼ + λ).

    λ (``shrinkage``) acts like λ pseudo-ratings at μ; lecturers unseen in training get μ.
    """

    def __init__(self, shrinkage: float = 5.0) -> None:
        if shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
        self.shrinkage = float(shrinkage)

    def fit(self, students, lecturers, ratings, n_lecturers: int | None = None) -> "Popularity":
        """Fit μ and the shrunk lecturer offsets bⱼ ``[n_lecturers]``."""
        _, items, r = validate_ratings(students, lecturers, ratings)
        n_items = int(items.max()) + 1 if n_lecturers is None else n_lecturers
        self.mu = float(r.mean())
        total = np.bincount(items, weights=r - self.mu, minlength=n_items)
        count = np.bincount(items, minlength=n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.item_bias = np.where(count + self.shrinkage > 0, total / (count + self.shrinkage), 0.0)
        self.n_lecturers = n_items
        return self

    def predict(self, lecturers) -> np.ndarray:
        """μ + bⱼ for each lecturer id."""
        return self.mu + self.item_bias[np.asarray(lecturers, dtype=np.int64)]

    def predict_new(self, support_lecturers, support_ratings, query_lecturers) -> np.ndarray:
        """μ + bⱼ for each query lecturer ``[n_query]``; the support set is not used."""
        _, _, qi = validate_new_student(support_lecturers, support_ratings, query_lecturers, self.n_lecturers)
        return self.predict(qi)
