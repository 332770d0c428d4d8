"""Rating-prediction baselines for cold-start recommendation: global mean, popularity, MF fold-in.

Derived in chapter 06 (Personalized learning-resource recommendation), section 2. All three are
fitted on the ratings of the meta-train students and then predict a *new* student's ratings from
that student's support set 𝒟ᵢˢ (K ratings):

* :class:`GlobalMean` predicts μ, the mean training rating, for everything (ignores 𝒟ᵢˢ);
* :class:`Popularity` predicts μ + bⱼ with a shrunk lecturer offset
  bⱼ = Σ (r − μ) / (nⱼ + λ): a lecturer with few ratings stays near μ (ignores 𝒟ᵢˢ);
* :class:`MatrixFactorization` is biased matrix factorisation r̂ᵤⱼ = μ + bᵤ + bⱼ + pᵤ·qⱼ fitted
  by alternating least squares (ALS). A new student is *folded in*: with the lecturer side
  (bⱼ, qⱼ) fixed, (bᵤ, pᵤ) is the ridge regression of (r − μ − bⱼ) on [1, qⱼ] over 𝒟ᵢˢ, i.e.
  the MAP estimate under a Gaussian prior — exactly one ALS user step. ``rank=0`` gives the
  additive "lecturer + student offset" model.

Every model has ``fit(students, lecturers, ratings)`` and
``predict_new(support_lecturers, support_ratings, query_lecturers) -> predictions``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["GlobalMean", "Popularity", "MatrixFactorization"]


def _check_triplets(users, items, ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users = np.asarray(users)
    items = np.asarray(items)
    ratings = np.asarray(ratings, dtype=float)
    if not (users.ndim == items.ndim == ratings.ndim == 1 and len(users) == len(items) == len(ratings)):
        raise ValueError(f"students, lecturers and ratings must be 1-D and of equal length, got shapes "
                         f"{users.shape}, {items.shape}, {ratings.shape}")
    if len(ratings) == 0:
        raise ValueError("no ratings to fit")
    if np.isnan(ratings).any():
        raise ValueError("ratings contain NaN; drop missing ratings first")
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise ValueError("student and lecturer ids must be integers (0-based codes)")
    if items.min() < 0 or users.min() < 0:
        raise ValueError("student and lecturer ids must be >= 0")
    return users.astype(np.int64), items.astype(np.int64), ratings


def _check_new(support_items, support_ratings, query_items, n_items: int | None):
    si = np.asarray(support_items)
    sr = np.asarray(support_ratings, dtype=float)
    qi = np.asarray(query_items)
    if si.ndim != 1 or sr.shape != si.shape:
        raise ValueError(f"support lecturers and ratings must be 1-D of equal length, got {si.shape} and {sr.shape}")
    if qi.ndim != 1 or qi.size == 0:
        raise ValueError(f"query lecturers must be a non-empty 1-D array, got shape {qi.shape}")
    if np.isnan(sr).any():
        raise ValueError("support ratings contain NaN; drop missing ratings first")
    if n_items is not None:
        for name, ix in (("support", si), ("query", qi)):
            if ix.size and (ix.min() < 0 or ix.max() >= n_items):
                raise ValueError(f"{name} lecturer ids must lie in 0..{n_items - 1}")
    return si.astype(np.int64), sr, qi.astype(np.int64)


class GlobalMean:
    """Predict the mean training rating μ for every lecturer and every student."""

    def fit(self, students, lecturers, ratings) -> "GlobalMean":
        """Store μ = mean rating. Shapes: three 1-D arrays ``[n_ratings]``."""
        _, _, r = _check_triplets(students, lecturers, ratings)
        self.mu = float(r.mean())
        return self

    def predict_new(self, support_lecturers, support_ratings, query_lecturers) -> np.ndarray:
        """μ for each query lecturer ``[n_query]``; the support set is not used."""
        _, _, qi = _check_new(support_lecturers, support_ratings, query_lecturers, None)
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
        _, items, r = _check_triplets(students, lecturers, ratings)
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
        _, _, qi = _check_new(support_lecturers, support_ratings, query_lecturers, self.n_lecturers)
        return self.predict(qi)


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
        users, items, r = _check_triplets(students, lecturers, ratings)
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
        si, sr, _ = _check_new(support_lecturers, support_ratings, np.zeros(1, np.int64), self.n_lecturers)
        feats = np.concatenate([np.ones((len(si), 1)), self.item_factors[si]], 1)
        gram = feats.T @ feats + np.diag(self._penalty())
        return np.linalg.solve(gram, feats.T @ (sr - self.mu - self.item_bias[si]))

    def predict(self, user_weights: np.ndarray, lecturers) -> np.ndarray:
        """μ + bᵤ + bⱼ + pᵤ·qⱼ for one student's weights ``[1 + rank]`` and lecturer ids ``[n]``."""
        ix = np.asarray(lecturers, dtype=np.int64)
        return self.mu + user_weights[0] + self.item_bias[ix] + self.item_factors[ix] @ user_weights[1:]

    def predict_new(self, support_lecturers, support_ratings, query_lecturers) -> np.ndarray:
        """Fold the new student in from the support set, then predict the query lecturers ``[n_query]``."""
        _, _, qi = _check_new(support_lecturers, support_ratings, query_lecturers, self.n_lecturers)
        return self.predict(self.fold_in(support_lecturers, support_ratings), qi)
