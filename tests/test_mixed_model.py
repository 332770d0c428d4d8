"""The covariate mixed model of chapter 06 (course_lib.baselines.mixed_model)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.baselines.mixed_model import CovariateMixedModel
from course_lib.data.insteval import CARDINALITY, FEATURES


def _planted(n_students: int = 300, per_student: int = 30, seed: int = 0):
    """Ratings from a known model: student and lecturer offsets, a service effect and a dept × service effect."""
    rng = np.random.default_rng(seed)
    n = n_students * per_student
    students = np.repeat(np.arange(n_students), per_student)
    lecturer = rng.integers(0, 60, n)
    dept_of = rng.integers(0, CARDINALITY["dept"], 60)
    x = np.stack([lecturer, dept_of[lecturer], rng.integers(0, 2, n), rng.integers(0, 6, n), rng.integers(0, 4, n)], 1)
    u, b = rng.normal(0, 0.5, n_students), rng.normal(0, 0.5, 60)
    service = 0.6 * x[:, 2] + 0.8 * ((x[:, 1] == 3) & (x[:, 2] == 1))
    y = 3.0 + u[students] + b[lecturer] + service + rng.normal(0, 0.3, n)
    return x, y, students, u, b


def test_recovers_planted_effects_and_folds_in_the_blup():
    x, y, students, u, b = _planted()
    model = CovariateMixedModel(reg_student=1.0, reg_lecturer=1.0, reg_covariate=1.0).fit(x, y, students)
    assert np.corrcoef(model.student_offsets, u)[0, 1] > 0.95
    # the population prediction of a service lecture exceeds the same lecture as a non-service one by ~0.6
    row = x[:1].copy()
    row[0, 1] = 0 if row[0, 1] == 3 else row[0, 1]
    on, off = row.copy(), row.copy()
    on[0, 2], off[0, 2] = 1, 0
    assert model.population(on)[0] - model.population(off)[0] == pytest.approx(0.6, abs=0.1)
    # fold-in: u = Σ residuals / (K + λ_u), then r̂ = r̂⁰ + u
    xs, ys = x[:5], y[:5]
    u_new = (ys - model.population(xs)).sum() / (5 + model.reg_student)
    np.testing.assert_allclose(model.predict_new_x(xs, ys, x[5:8]), model.population(x[5:8]) + u_new)
    np.testing.assert_allclose(model.predict_new_x(xs[:0], ys[:0], x[5:8]), model.population(x[5:8]))
    shares = model.variance_shares
    assert shares["residual"] < 0.3 and shares["covariates"] > 0.1 and shares["student"] > 0.2


def test_covariates_only_and_main_effects_only_explain_less():
    x, y, students, _, _ = _planted()
    full = CovariateMixedModel(1.0, 1.0, 1.0).fit(x, y, students)
    no_lecturer = CovariateMixedModel(1.0, 1.0, 1.0, use_lecturer=False).fit(x, y, students)
    assert "lecturer" not in no_lecturer.variance_shares
    assert no_lecturer.variance_shares["residual"] > full.variance_shares["residual"] + 0.05
    mains = CovariateMixedModel(1.0, 1.0, 1.0, interactions=False).fit(x, y, students)
    assert mains.variance_shares["residual"] > full.variance_shares["residual"]


def test_bad_input_says_what_to_fix():
    with pytest.raises(ValueError, match="penalties must be > 0"):
        CovariateMixedModel(reg_student=0.0)
    x, y, students, _, _ = _planted(20, 5)
    with pytest.raises(ValueError, match=r"shape \[n, 5\]"):
        CovariateMixedModel().fit(x[:, :3], y, students)
    with pytest.raises(ValueError, match="out of range"):
        bad = x.copy()
        bad[0, FEATURES.index("studage")] = 9
        CovariateMixedModel().fit(bad, y, students)
    with pytest.raises(ValueError, match="one per row"):
        CovariateMixedModel().fit(x, y[:-1], students)
    with pytest.raises(RuntimeError, match="call fit"):
        CovariateMixedModel().population(x)
    model = CovariateMixedModel().fit(x, y, students)
    with pytest.raises(ValueError, match="one per support row"):
        model.predict_new_x(x[:3], y[:2], x[:2])
