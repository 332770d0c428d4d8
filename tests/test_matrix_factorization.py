"""Biased matrix factorisation by ALS with fold-in of a new student (chapter 06, section 2)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.baselines.matrix_factorization import MatrixFactorization



def planted(n_users=300, n_items=60, rank=3, noise=0.0, density=0.5, seed=0):
    """Ratings from r = μ + bᵤ + bⱼ + pᵤ·qⱼ (+ noise) on a random subset of (user, item) pairs."""
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 1, (n_users, rank)), rng.normal(0, 1, (n_items, rank))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3.0 + bu[u] + bi[i] + (P[u] * Q[i]).sum(1) + noise * rng.normal(size=len(u))
    return u, i, r, (P, Q, bu, bi)


def test_als_fits_a_planted_low_rank_matrix():
    u, i, r, _ = planted(rank=3, noise=0.0)
    mf = MatrixFactorization(rank=3, reg=1e-3, reg_bias=1e-3, iterations=60).fit(u, i, r)
    fitted = mf.mu + mf.user_weights[u, 0] + mf.item_bias[i] + (mf.user_weights[u, 1:] * mf.item_factors[i]).sum(1)
    assert np.sqrt(np.mean((fitted - r) ** 2)) < 0.05 * r.std()


def test_fold_in_recovers_a_planted_user_in_the_limit():
    """With the lecturer side known and many noise-free ratings, fold-in returns the planted (bᵤ, pᵤ)."""
    rng = np.random.default_rng(1)
    n_items, rank = 400, 4
    mf = MatrixFactorization(rank=rank, reg=1e-6, reg_bias=1e-6)
    mf.mu, mf.n_lecturers = 3.2, n_items
    mf.item_bias, mf.item_factors = rng.normal(0, .5, n_items), rng.normal(0, 1, (n_items, rank))
    b_true, p_true = 0.7, rng.normal(0, 1, rank)
    items = rng.permutation(n_items)[:300]
    ratings = mf.mu + b_true + mf.item_bias[items] + mf.item_factors[items] @ p_true
    w = mf.fold_in(items, ratings)
    assert np.allclose(w, np.r_[b_true, p_true], atol=1e-4)
    unseen = np.setdiff1d(np.arange(n_items), items)
    truth = mf.mu + b_true + mf.item_bias[unseen] + mf.item_factors[unseen] @ p_true
    assert np.allclose(mf.predict_new(items, ratings, unseen), truth, atol=1e-4)


def test_fold_in_after_als_predicts_a_new_user():
    u, i, r, (P, Q, bu, bi) = planted(n_users=400, rank=2, noise=0.0, density=0.6, seed=2)
    new = u == 0
    mf = MatrixFactorization(rank=2, reg=1e-3, reg_bias=1e-3, iterations=60).fit(u[~new], i[~new], r[~new])
    items = i[new]
    half = len(items) // 2
    pred = mf.predict_new(items[:half], r[new][:half], items[half:])
    assert np.sqrt(np.mean((pred - r[new][half:]) ** 2)) < 0.1


def test_fold_in_is_ridge_shrinkage():
    """rank 0: bᵤ = Σ residuals / (K + λ_b), the shrunk mean; no support gives bᵤ = 0."""
    mf = MatrixFactorization(rank=0, reg=1.0, reg_bias=4.0)
    mf.mu, mf.item_bias, mf.item_factors, mf.n_lecturers = 3.0, np.array([0.5, -0.5, 0.0]), np.zeros((3, 0)), 3
    w = mf.fold_in([0, 1], [5.0, 3.0])
    assert np.isclose(w[0], ((5 - 3.5) + (3 - 2.5)) / (2 + 4))
    assert np.allclose(mf.fold_in([], []), 0.0)
    assert np.allclose(mf.predict_new([], [], [0, 1, 2]), [3.5, 2.5, 3.0])


def test_more_support_means_less_shrinkage():
    mf = MatrixFactorization(rank=0, reg=1.0, reg_bias=5.0)
    mf.mu, mf.item_bias, mf.item_factors, mf.n_lecturers = 3.0, np.zeros(50), np.zeros((50, 0)), 50
    offsets = [mf.fold_in(np.arange(k), np.full(k, 4.0))[0] for k in (1, 3, 10, 50)]
    assert all(a < b for a, b in zip(offsets, offsets[1:])) and offsets[-1] < 1.0


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="reg > 0"):
        MatrixFactorization(reg=0)
