"""Non-personal rating baselines: the global mean and shrunk popularity (chapter 06, section 2)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.baselines.popularity import GlobalMean, Popularity


def test_global_mean_ignores_support():
    m = GlobalMean().fit([0, 0, 1], [0, 1, 1], [1.0, 2.0, 6.0])
    assert m.mu == 3.0
    assert np.all(m.predict_new([1], [5.0], [0, 1, 0]) == 3.0)


def test_popularity_shrinkage_by_hand():
    # lecturer 0: ratings 5, 5 ; lecturer 1: rating 1 ; μ = 11/3
    m = Popularity(shrinkage=1.0).fit([0, 1, 2], [0, 0, 1], [5.0, 5.0, 1.0], n_lecturers=3)
    mu = 11 / 3
    assert np.isclose(m.mu, mu)
    assert np.isclose(m.predict([0])[0], mu + 2 * (5 - mu) / (2 + 1))
    assert np.isclose(m.predict([1])[0], mu + (1 - mu) / (1 + 1))
    assert np.isclose(m.predict([2])[0], mu)  # never rated: the global mean
    raw = Popularity(shrinkage=0.0).fit([0, 1, 2], [0, 0, 1], [5.0, 5.0, 1.0])
    assert np.allclose(raw.predict([0, 1]), [5.0, 1.0])


def test_out_of_range_lecturer_and_bad_shrinkage():
    m = Popularity().fit([0, 1], [0, 1], [3.0, 4.0], n_lecturers=2)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        m.predict_new([0], [3.0], [5])
    with pytest.raises(ValueError, match="shrinkage"):
        Popularity(shrinkage=-1)
