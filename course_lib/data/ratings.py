"""Validation of rating triplets (student, lecturer, rating), shared by every chapter 06 recommender."""

from __future__ import annotations

import numpy as np

__all__ = ["validate_ratings", "validate_new_student"]


def validate_ratings(users, items, ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check (student, lecturer, rating) triplets: 1-D, equal length, integer ids >= 0, no NaN."""
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


def validate_new_student(support_items, support_ratings, query_items, n_items: int | None):
    """Check a new student's support (lecturer, rating) pairs and query lecturers against ``n_items``."""
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
