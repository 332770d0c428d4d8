"""Tests for course_lib.adaptive.planning: the QMDP lookahead tutor."""

import numpy as np
import pytest

from course_lib.adaptive.classroom import JointBelief, default_classroom, sample_hypotheses, simulate
from course_lib.adaptive.planning import LookaheadPolicy, plan_values
from course_lib.adaptive.policies import ThompsonPolicy

ROOM = default_classroom()
CUR = ROOM.curriculum
HYP = sample_hypotheses(16, seed=0)


def test_depth_one_values_are_the_one_step_gains():
    """Q₁(h, z, s) = #mastered(z) + gain(h, s, z): the one-step tutor's criterion plus a constant."""
    model = JointBelief(CUR, HYP)
    q = plan_values(CUR, HYP, 1)
    np.testing.assert_allclose(q, model.bits.sum(1)[None, :, None] + model.gain.transpose(0, 2, 1), atol=1e-12)


def test_depth_one_planner_acts_like_the_one_step_tutor():
    a = simulate(ROOM, ThompsonPolicy(CUR, HYP), 60, 30, seed=3)
    b = simulate(ROOM, LookaheadPolicy(CUR, HYP, depth=1), 60, 30, seed=3)
    assert (a.activity == b.activity).mean() > 0.99


def test_values_obey_the_bellman_recursion_and_grow_with_depth():
    """Q_{d+1}(z, s) = E[r(z') + max_s' Q_d(z', s')]; with non-negative rewards, more depth, more value."""
    model = JointBelief(CUR, HYP)
    q5, q6 = plan_values(CUR, HYP, 5), plan_values(CUR, HYP, 6)
    bits, h, z, s = model.bits, 3, 5, 2
    p = model.forget[h, s] if bits[z, s] else model.learn[h, s, z]
    z2 = z ^ (1 << s)
    want = (1 - p) * (bits[z].sum() + q5[h, z].max()) + p * (bits[z2].sum() + q5[h, z2].max())
    assert q6[h, z, s] == pytest.approx(want)
    assert (q6 >= q5 - 1e-12).all()
    full = 2 ** CUR.n_skills - 1
    assert plan_values(CUR, HYP, 4, objective="all")[:, full].max() <= 4 + 1e-12


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="depth"):
        plan_values(CUR, HYP, 0)
    with pytest.raises(ValueError, match="objective"):
        plan_values(CUR, HYP, 2, objective="fast")
