"""The simulated classroom (chapter 07, part B): BKT dynamics, exact beliefs, policies, BKT fitting."""

import itertools

import numpy as np
import pandas as pd
import pytest

from course_lib.adaptive.bkt import fit_bkt, fit_bkt_pybkt
from course_lib.adaptive.classroom import (PARAM_NAMES, Classroom, ClassroomLogs, Curriculum, default_classroom,
                                           log_likelihoods, logs_to_frame, meta_learn_prior, sample_hypotheses,
                                           simulate)
from course_lib.adaptive.policies import FixedCurriculum, OraclePolicy, ThompsonPolicy

PSI = np.array([[0.2, 0.25, 0.2, 0.1, 0.03]])


def one_skill_classroom(psi=PSI) -> Classroom:
    return Classroom(Curriculum(("s",), ((),), (1.0,)), ("only",), (1.0,), psi)


def two_skill_classroom(blocked=0.3) -> Classroom:
    cur = Curriculum(("a", "b"), ((), (0,)), (1.0, 0.8), blocked_learn=blocked)
    return Classroom(cur, ("t1", "t2"), (0.5, 0.5), np.array([[0.2, 0.3, 0.2, 0.1, 0.05],
                                                               [0.1, 0.1, 0.25, 0.15, 0.02]]))


def make_logs(activity, correct, n_skills=2) -> ClassroomLogs:
    activity, correct = np.atleast_2d(activity), np.atleast_2d(correct)
    N, T = activity.shape
    return ClassroomLogs(np.zeros(N, int), activity, correct.astype(np.int8),
                         np.zeros((N, T + 1, n_skills), bool), np.full((N, T + 1, n_skills), np.nan))


# ------------------------------------------------------------------------------ structure and input

def test_topological_order_respects_prerequisites():
    cur = default_classroom().curriculum
    order = cur.topological_order()
    assert sorted(order) == list(range(cur.n_skills))
    for s, pre in enumerate(cur.prerequisites):
        assert all(order.index(p) < order.index(s) for p in pre)


@pytest.mark.parametrize("kwargs, match", [
    (dict(skills=("a", "b"), prerequisites=((1,), (0,)), ease=(1, 1)), "cycle"),
    (dict(skills=("a", "b"), prerequisites=((), (5,)), ease=(1, 1)), "invalid prerequisite"),
    (dict(skills=("a", "b"), prerequisites=((),), ease=(1, 1)), "one entry per skill"),
    (dict(skills=("a",), prerequisites=((),), ease=(0.0,)), "ease"),
    (dict(skills=(), prerequisites=(), ease=()), "at least one skill"),
])
def test_bad_curricula_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Curriculum(**kwargs)


def test_bad_classrooms_and_hypotheses_are_rejected():
    cur = Curriculum(("s",), ((),), (1.0,))
    with pytest.raises(ValueError, match="guess < 1 − slip"):
        Classroom(cur, ("x",), (1.0,), np.array([[0.1, 0.1, 0.6, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="sum to 1"):
        Classroom(cur, ("x",), (0.5,), PSI)
    with pytest.raises(ValueError, match=r"\[n, 5\]"):
        Classroom(cur, ("x",), (1.0,), np.array([[0.1, 0.1, 0.2]]))
    with pytest.raises(ValueError, match="probabilities"):
        ThompsonPolicy(cur, np.array([[0.1, np.nan, 0.2, 0.1, 0.0]]))
    with pytest.raises(ValueError, match="weights"):
        ThompsonPolicy(cur, PSI, weights=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="positive int"):
        sample_hypotheses(0, seed=0)


def test_simulate_rejects_bad_input():
    room = default_classroom()
    other = Curriculum(("s",), ((),), (1.0,))
    with pytest.raises(ValueError, match="n_learners"):
        simulate(room, FixedCurriculum(room.curriculum), 0, 10, seed=0)
    with pytest.raises(ValueError, match="horizon"):
        simulate(room, FixedCurriculum(room.curriculum), 5, 0, seed=0)
    with pytest.raises(ValueError, match="different curriculum"):
        simulate(room, FixedCurriculum(other), 5, 10, seed=0)
    with pytest.raises(ValueError, match="learner_types"):
        simulate(room, FixedCurriculum(room.curriculum), 3, 10, seed=0, learner_types=np.array([0, 1, 7]))


# ------------------------------------------------------------------------------ the simulator is BKT

def test_simulator_matches_the_bkt_marginals():
    """Practising one skill: P(correct at opportunity t) follows the BKT recursion of the true ψ."""
    room = one_skill_classroom()
    logs = simulate(room, FixedCurriculum(room.curriculum), 20000, 8, seed=1)
    prior, learn, guess, slip, forget = PSI[0]
    m, expected = prior, []
    for _ in range(8):
        expected.append(m * (1 - slip) + (1 - m) * guess)
        m = m * (1 - forget) + (1 - m) * learn
    np.testing.assert_allclose(logs.correct.mean(0), expected, atol=0.015)
    np.testing.assert_allclose(logs.mastered[:, :, 0].mean(0)[-1], m, atol=0.015)


class PractiseOnly:
    """A policy that always practises the same skill (for testing the simulator)."""

    def __init__(self, curriculum, skill):
        self.curriculum, self.skill, self.name = curriculum, skill, f"only {skill}"

    def begin(self, n, types):
        return {"n": n}

    def act(self, state, rng):
        return np.full(state["n"], self.skill)

    def update(self, state, a, y):
        return state

    def mastery_estimate(self, state):
        return None


def test_prerequisites_block_learning():
    """With blocked_learn = 0, skill b (needs a) is learned only by learners who already know a."""
    room = two_skill_classroom(blocked=0.0)
    logs = simulate(room, PractiseOnly(room.curriculum, 1), 3000, 10, seed=0)
    knew_a = logs.mastered[:, 0, 0]
    gained_b = logs.mastered[:, -1, 1] & ~logs.mastered[:, 0, 1]
    assert gained_b[~knew_a].sum() == 0 and gained_b[knew_a].sum() > 50


def test_simulation_is_deterministic_and_time_to_mastery():
    room = default_classroom()
    a = simulate(room, FixedCurriculum(room.curriculum), 50, 30, seed=3)
    b = simulate(room, FixedCurriculum(room.curriculum), 50, 30, seed=3)
    assert np.array_equal(a.correct, b.correct) and np.array_equal(a.mastered, b.mastered)
    ttm = a.time_to_mastery()
    for n in range(50):
        all_m = a.mastered[n].all(1)
        assert (np.isnan(ttm[n]) and not all_m.any()) or (all_m[int(ttm[n])] and not all_m[:int(ttm[n])].any())
    assert a.mastery_curve().shape == (50, 31)


# ------------------------------------------------------------------------------ exact beliefs

def brute_force_loglik(room: Classroom, psi, activity, correct) -> float:
    """Σ over every hidden path of joint mastery states (4^(T+1) paths for 2 skills)."""
    cur = room.curriculum
    p = cur.expand(np.asarray(psi)[None])
    p = {k: v[0] for k, v in p.items()}
    states = list(itertools.product([0, 1], repeat=cur.n_skills))
    total = 0.0
    for path in itertools.product(states, repeat=len(activity) + 1):
        pr = np.prod([p["prior"][s] if path[0][s] else 1 - p["prior"][s] for s in range(cur.n_skills)])
        for t, (a, y) in enumerate(zip(activity, correct)):
            z, z2 = path[t], path[t + 1]
            pc = 1 - p["slip"][a] if z[a] else p["guess"][a]
            pr *= pc if y else 1 - pc
            gate = all(z[q] for q in cur.prerequisites[a])
            move = p["forget"][a] if z[a] else p["learn"][a] * (1 if gate else cur.blocked_learn)
            others_same = all(z2[s] == z[s] for s in range(cur.n_skills) if s != a)
            pr *= (move if z2[a] != z[a] else 1 - move) if others_same else 0.0
        total += pr
    return float(np.log(total))


def test_exact_filter_equals_brute_force_sum_over_paths():
    room = two_skill_classroom()
    activity = np.array([1, 0, 0, 1, 1])
    correct = np.array([0, 1, 1, 0, 1])
    hyp = room.type_params
    ll = log_likelihoods(room.curriculum, make_logs(activity, correct), hyp)
    for h in range(len(hyp)):
        assert ll[0, h] == pytest.approx(brute_force_loglik(room, hyp[h], activity, correct), rel=1e-5)


def test_oracle_mastery_estimate_is_calibrated():
    """With the true prior the posterior mastery is calibrated: E[estimate] = E[mastered] at every t."""
    room = default_classroom()
    logs = simulate(room, OraclePolicy(room.curriculum, room.type_params), 3000, 25, seed=2)
    np.testing.assert_allclose(logs.estimate.mean(0), logs.mastered.mean(0), atol=0.03)
    assert np.nanmin(logs.estimate) >= 0 and np.nanmax(logs.estimate) <= 1


# ------------------------------------------------------------------------------ policies

def test_fixed_curriculum_follows_prerequisite_blocks():
    room = default_classroom()
    logs = simulate(room, FixedCurriculum(room.curriculum, block=3), 4, 20, seed=0)
    order = room.curriculum.topological_order()
    expected = [order[(t // 3) % len(order)] for t in range(20)]
    assert (logs.activity == np.array(expected)[None]).all()
    assert np.isnan(logs.estimate).all()


def test_adaptive_policies_beat_the_fixed_curriculum_and_stay_valid():
    room = default_classroom()
    hyp = sample_hypotheses(48, seed=0)
    fixed = simulate(room, FixedCurriculum(room.curriculum), 300, 40, seed=5)
    ts = simulate(room, ThompsonPolicy(room.curriculum, hyp), 300, 40, seed=5)
    greedy = simulate(room, ThompsonPolicy(room.curriculum, hyp, sample=False), 300, 40, seed=5)
    for logs in (ts, greedy):
        assert logs.activity.min() >= 0 and logs.activity.max() < room.curriculum.n_skills
        assert logs.mastery_curve()[:, -1].mean() > fixed.mastery_curve()[:, -1].mean() + 0.05


# ------------------------------------------------------------------------------ meta-learning the prior

def test_meta_learned_prior_finds_the_learner_types():
    room = default_classroom()
    past = simulate(room, FixedCurriculum(room.curriculum), 400, 60, seed=1)
    decoys = sample_hypotheses(30, seed=0)
    hyp = np.vstack([room.type_params, decoys])
    w, history = meta_learn_prior(room.curriculum, past, hyp, n_iter=100, floor=0.0)
    assert np.all(np.diff(history) >= -1e-6)        # EM never decreases the marginal likelihood
    assert w.sum() == pytest.approx(1.0)
    assert w[:3].sum() > 0.8                        # most of the prior mass on the true types
    np.testing.assert_allclose(w[:3] / w[:3].sum(), room.type_weights, atol=0.12)
    with pytest.raises(ValueError, match="floor"):
        meta_learn_prior(room.curriculum, past, hyp, floor=1.0)


# ------------------------------------------------------------------------------ fitting BKT

def test_fit_bkt_recovers_known_parameters_in_the_limit():
    psi = np.array([[0.25, 0.2, 0.2, 0.1, 0.03]])
    room = one_skill_classroom(psi)
    logs = simulate(room, FixedCurriculum(room.curriculum), 5000, 20, seed=0)
    fit = fit_bkt(logs_to_frame(logs, room), n_restarts=1)
    np.testing.assert_allclose(fit.loc["s", list(PARAM_NAMES)].to_numpy(float), psi[0], atol=0.025)
    no_forget = fit_bkt(logs_to_frame(logs, room), forgets=False, n_restarts=1)
    assert no_forget.loc["s", "forget"] == 0.0


def test_fit_bkt_agrees_with_pybkt():
    room = one_skill_classroom()
    logs = simulate(room, FixedCurriculum(room.curriculum), 80, 12, seed=4)
    frame = logs_to_frame(logs, room)
    ours = fit_bkt(frame, n_restarts=1)
    theirs = fit_bkt_pybkt(frame)
    cols = list(PARAM_NAMES)
    np.testing.assert_allclose(ours[cols].to_numpy(float), theirs[cols].to_numpy(float), atol=1e-4)


def test_logs_to_frame_and_fit_input_errors():
    room = default_classroom()
    logs = simulate(room, FixedCurriculum(room.curriculum), 5, 10, seed=0)
    frame = logs_to_frame(logs, room, by_type=True)
    assert set(frame.columns) >= {"user_id", "skill_name", "correct", "order_id", "learner_type"}
    assert frame["skill_name"].str.contains("/").all() and len(frame) == 50
    with pytest.raises(ValueError, match="needs the Classroom"):
        logs_to_frame(logs, room.curriculum, by_type=True)
    with pytest.raises(ValueError, match="lacks the columns"):
        fit_bkt(frame.drop(columns="order_id"))
    bad = frame.astype({"correct": float})
    bad.loc[0, "correct"] = np.nan
    with pytest.raises(ValueError, match="only 0 and 1"):
        fit_bkt(bad)
    with pytest.raises(ValueError, match="empty"):
        fit_bkt(frame.iloc[:0])
    with pytest.raises(ValueError, match="DataFrame"):
        fit_bkt(np.zeros((3, 4)))
    assert isinstance(fit_bkt(frame, n_restarts=2), pd.DataFrame)


def test_data_card_checksum():
    """datasets/bkt_classroom_synthetic.md pins the past cohort of chapter 07."""
    from course_lib.adaptive.classroom import logs_checksum

    room = default_classroom()
    past = simulate(room, FixedCurriculum(room.curriculum, 8), 600, 80, seed=0)
    assert logs_checksum(past) == "bc457eb80ffc8baabefef4b6da960c5eeb7b08b5775a062aef9c72a2d3aa5184"
    assert len(logs_to_frame(past, room)) == 48_000
    assert np.bincount(past.learner_type).tolist() == [160, 305, 135]


def test_time_to_certify():
    logs = make_logs(np.zeros((2, 3), int), np.ones((2, 3)), n_skills=1)
    est = np.array([[0.5, 0.96, 0.97, 0.99], [0.1, 0.2, 0.3, 0.4]])[:, :, None]
    mastered = np.array([[0, 0, 1, 1], [0, 0, 0, 0]], bool)[:, :, None]
    logs = ClassroomLogs(logs.learner_type, logs.activity, logs.correct, mastered, est)
    t, truly = logs.time_to_certify(0.95)
    assert t[0] == 1 and np.isnan(t[1]) and truly.tolist() == [False, False]
    with pytest.raises(ValueError, match="threshold"):
        logs.time_to_certify(1.0)
