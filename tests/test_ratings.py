"""Validation of rating triplets (course_lib.data.ratings), through every chapter 06 recommender."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.baselines.matrix_factorization import MatrixFactorization
from course_lib.baselines.popularity import GlobalMean, Popularity


@pytest.mark.parametrize("make", [GlobalMean, Popularity, MatrixFactorization])
def test_bad_input(make):
    m = make()
    with pytest.raises(ValueError, match="equal length"):
        m.fit([0, 1], [0], [3.0, 4.0])
    with pytest.raises(ValueError, match="NaN"):
        m.fit([0, 1], [0, 1], [3.0, np.nan])
    with pytest.raises(ValueError, match="no ratings"):
        m.fit([], [], [])
    with pytest.raises(ValueError, match=">= 0"):
        m.fit([0, -1], [0, 1], [3.0, 4.0])
    m.fit([0, 1, 1], [0, 1, 2], [3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="non-empty"):
        m.predict_new([0], [3.0], [])
    with pytest.raises(ValueError, match="NaN"):
        m.predict_new([0], [np.nan], [1])

