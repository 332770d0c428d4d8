"""Tests for course_lib.adaptive.feedback: the feedback simulator, its bandits and the meta-learned prior."""

import numpy as np
import pytest

from course_lib.adaptive.feedback import (ACTIONS, BetaThompson, FeedbackSimulator, FixedFeedback, MixtureThompson,
                                          OracleFeedback, default_feedback_simulator, meta_learn_feedback_prior,
                                          simulate_feedback)

SIM = default_feedback_simulator()


def test_best_action_differs_by_type():
    assert len(set(SIM.best_actions().tolist())) == len(SIM.types)


def test_learning_and_rewards_follow_the_stated_effects():
    logs = simulate_feedback(SIM, FixedFeedback(None, "random"), 4000, 20, seed=0)
    effect = np.asarray(SIM.effect)
    for k in range(len(SIM.types)):
        for a in range(len(ACTIONS)):
            sel = (logs.types[:, None] == k) & (logs.action == a)
            assert logs.learned[sel].mean() == pytest.approx(effect[k, a], abs=0.03)
    np.testing.assert_allclose(logs.expected, effect[logs.types[:, None], logs.action])


def test_oracle_has_zero_regret_and_everyone_else_non_negative():
    oracle = simulate_feedback(SIM, OracleFeedback(SIM), 200, 15, seed=1)
    assert np.allclose(oracle.regret(SIM), 0)
    other = simulate_feedback(SIM, BetaThompson(), 200, 15, seed=1)
    assert (np.diff(other.regret(SIM), axis=1) >= -1e-12).all()
    with pytest.raises(ValueError, match="types"):
        OracleFeedback(SIM).begin(np.zeros(3, int))


def test_em_recovers_type_profiles_from_an_exploration_log():
    """With a lot of exploration data, each type's reward profile is close to one learned component."""
    logs = simulate_feedback(SIM, FixedFeedback(None, "random"), 4000, 40, seed=2)
    profiles, prior, history = meta_learn_feedback_prior(logs.context, logs.action, logs.reward, 3, 3)
    g, s = np.asarray(SIM.guess)[:, None], np.asarray(SIM.slip)[:, None]
    truth = np.asarray(SIM.effect) * (1 - s) + (1 - np.asarray(SIM.effect)) * g   # reward rates per type
    dist = np.abs(truth[:, None, :] - profiles[None]).max(2)                        # [types, components]
    assert dist.min(1).max() < 0.08
    assert np.all(np.diff(history) > -1e-6)                                          # EM never decreases
    np.testing.assert_allclose(prior.sum(1), 1)


def test_mixture_posterior_is_bayes_rule():
    profiles = np.array([[0.8, 0.2, 0.5, 0.5], [0.2, 0.8, 0.5, 0.5]])
    policy = MixtureThompson(profiles, np.array([[0.5, 0.5]]), sample=False)
    state = policy.begin(np.zeros(1, int))
    state = policy.update(state, np.array([0]), np.array([1]))
    w = np.exp(state["log_w"][0]) / np.exp(state["log_w"][0]).sum()
    assert w[0] == pytest.approx(0.8)
    assert policy.act(state, np.random.default_rng(0))[0] == 0


def test_simulator_validates():
    with pytest.raises(ValueError, match="effect"):
        FeedbackSimulator(("a",), (1.0,), np.ones((1, 2)), np.array([0.1]), np.array([0.1]), np.ones((1, 1)))
    with pytest.raises(ValueError, match="profiles"):
        MixtureThompson(np.ones((2, 4)), np.full((1, 2), 0.5))
