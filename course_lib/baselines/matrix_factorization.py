"""Biased matrix factorisation with fold-in of a new student: the strongest non-meta recommender baseline.

Derived in chapter 06, section 2. r̂ᵤⱼ = μ + bᵤ + bⱼ + pᵤ·qⱼ is fitted by alternating least
squares (ALS) on the meta-train students. A new student is *folded in*: with the lecturer side
(bⱼ, qⱼ) fixed, (bᵤ, pᵤ) is the ridge regression of (r − μ − bⱼ) on [1, qⱼ] over 𝒟ᵢˢ, i.e. the MAP
estimate under a Gaussian prior — exactly one ALS user step. ``rank=0`` gives the additive
"lecturer + student offset" model.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_lib.data.ratings import validate_new_student, validate_ratings

__all__ = ["MatrixFactorization"]


def _ridge_rows(owner: np.ndarray, feats: np.ndarray, target: np.ndarray, n_rows: int,
                penalty: np.ndarray) -> np.ndarray:
    """Solve one ridge regression per row owner: (Σ f fᵀ + diag(penalty)) w = Σ f t. -> ``[n_rows, d]``."""
    d = feats.shape[1]
    pick = sp.csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))), shape=(n_rows, len(owner)))
    gram = (pick @ (feats[:, :, None] * feats[:, None, :]).reshape(len(owner), d * d)).reshape(n_rows, d, d)
    rhs = pick @ (feats * target[:, None])
    gram += np.diag(penalty)[None]
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


class MatrixFactorization:
    """Biased matrix factorisation r̂ᵤⱼ = μ + bᵤ + bⱼ + pᵤ·qⱼ by ALS, with fold-in of new students.

    Penalties: ``reg`` on the factors pᵤ, qⱼ (prior precision relative to the noise), ``reg_bias``
    on the offsets bᵤ, bⱼ. ``rank=0`` is the additive offsets-only model.
    """

    def __init__(self, rank: int = 8, reg: float = 10.0, reg_bias: float = 5.0, iterations: int = 15,
                 seed: int = 0) -> None:
        if rank < 0 or iterations < 1 or reg <= 0 or reg_bias <= 0:
            raise ValueError(f"need rank >= 0, iterations >= 1, reg > 0, reg_bias > 0; got rank={rank}, "
                             f"iterations={iterations}, reg={reg}, reg_bias={reg_bias}")
        self.rank, self.reg, self.reg_bias, self.iterations, self.seed = rank, reg, reg_bias, iterations, seed

    def _penalty(self) -> np.ndarray:
        return np.array([self.reg_bias] + [self.reg] * self.rank)

    def fit(self, students, lecturers, ratings, n_lecturers: int | None = None) -> "MatrixFactorization":
        """ALS on training triplets (1-D arrays ``[n_ratings]``); stores μ, item offsets bⱼ and factors Q."""
        users, items, r = validate_ratings(students, lecturers, ratings)
        _, users = np.unique(users, return_inverse=True)
        n_users = int(users.max()) + 1
        n_items = int(items.max()) + 1 if n_lecturers is None else n_lecturers
        rng = np.random.default_rng(self.seed)
        self.mu = float(r.mean())
        item_w = np.concatenate([np.zeros((n_items, 1)), rng.normal(0, 0.1, (n_items, self.rank))], 1)
        user_w = np.zeros((n_users, 1 + self.rank))
        pen = self._penalty()
        for _ in range(self.iterations):
            # user step: regress r − μ − bⱼ on [1, qⱼ]
            feats = np.concatenate([np.ones((len(r), 1)), item_w[items, 1:]], 1)
            user_w = _ridge_rows(users, feats, r - self.mu - item_w[items, 0], n_users, pen)
            # item step: regress r − μ − bᵤ on [1, pᵤ]
            feats = np.concatenate([np.ones((len(r), 1)), user_w[users, 1:]], 1)
            item_w = _ridge_rows(items, feats, r - self.mu - user_w[users, 0], n_items, pen)
        self.item_bias = item_w[:, 0]
        self.item_factors = item_w[:, 1:]
        self.user_weights = user_w
        self.n_lecturers = n_items
        return self

    def fold_in(self, support_lecturers, support_ratings) -> np.ndarray:
        """A new student's ``[1 + rank]`` weights (bᵤ, pᵤ): ridge regression on the fixed lecturer side.

        With no support ratings this is the prior mean 0 (so predictions fall back to μ + bⱼ).
        """
        si, sr, _ = validate_new_student(support_lecturers, support_ratings, np.zeros(1, np.int64), self.n_lecturers)
        feats = np.concatenate([np.ones((len(si), 1)), self.item_factors[si]], 1)
        gram = feats.T @ feats + np.diag(self._penalty())
        return np.linalg.solve(gram, feats.T @ (sr - self.mu - self.item_bias[si]))

    def predict(self, user_weights: np.ndarray, lecturers) -> np.ndarray:
        """μ + bᵤ + bⱼ + pᵤ·qⱼ for one student's weights ``[1 + rank]`` and lecturer ids ``[n]``."""
        ix = np.asarray(lecturers, dtype=np.int64)
        return self.mu + user_weights[0] + self.item_bias[ix] + self.item_factors[ix] @ user_weights[1:]

    def predict_new(self, support_lecturers, support_ratings, query_lecturers) -> np.ndarray:
        """Fold the new student in from the support set, then predict the query lecturers ``[n_query]``."""
        _, _, qi = validate_new_student(support_lecturers, support_ratings, query_lecturers, self.n_lecturers)
        return self.predict(self.fold_in(support_lecturers, support_ratings), qi)
