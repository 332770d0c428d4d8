"""Checks for chapter 07 (Adaptive difficulty and learning paths).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or a function that returns ``None``),
and raises ``ExerciseError`` with a hint for a wrong answer. Every check draws fresh random inputs at
each call, compares with a private reference (the tests check each reference against the
`course_lib.adaptive` code it mirrors), and rejects an answer that calls that code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.adaptive import cat, classroom, feedback, planning, policies
from course_lib.baselines import irt
from course_lib.exercises import as_array, as_number, fail, fresh_rng, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

_INFORMATION = {"course_lib.baselines.irt.fisher_information": irt.fisher_information,
                "course_lib.adaptive.cat.select_items": cat.select_items}
_BELIEF = {"course_lib.adaptive.policies.ThompsonPolicy": policies.ThompsonPolicy,
           "course_lib.adaptive.policies.OraclePolicy": policies.OraclePolicy,
           "course_lib.adaptive.classroom.JointBelief": classroom.JointBelief}

__all__ = ["check_item_information", "check_next_item", "check_bkt_update", "check_em_step", "check_plan_one_skill",
           "check_feedback_posterior"]


def _call(fn: Callable, *args, what: str):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is the reader's answer
        fail(f"calling your function {what} raised {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- exercise 1

def check_item_information(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(theta, a, b)`` = Fisher information a² p (1 − p) of 2PL items, p = σ(a(θ − b)).

    Called with NumPy arrays that broadcast (``theta [n, 1]``, ``a, b [items]``).
    """
    if fn is None:
        return _todo("define item_information(theta, a, b) and pass it to the check")
    forbid_calls(fn, _INFORMATION, "the information a² p (1 − p) with numpy")
    rng = fresh_rng()
    n, items = int(rng.integers(5, 10)), int(rng.integers(6, 13))
    theta = np.sort(rng.uniform(-3, 3, n))[:, None]
    a = rng.uniform(0.4, 2.5, items)
    b = rng.normal(0, 1, items)
    got = _call(fn, theta, a, b, what=f"with theta [{n}, 1] and a, b [{items}]")
    if got is None:
        return _todo("your function returns None; return a² p (1 − p)")
    got = as_array(got, "the result")
    p = 1 / (1 + np.exp(-a * (theta - b)))
    expected = a ** 2 * p * (1 - p)
    if got.shape != expected.shape:
        fail(f"theta [{n}, 1] with a, b [{items}] must broadcast to [{n}, {items}], got {got.shape}")
    if np.allclose(got, p * (1 - p), atol=1e-8):
        fail("that is p (1 − p) only: the information of a 2PL item also grows with the square of its "
             "discrimination a")
    if np.allclose(got, a * p * (1 - p), atol=1e-8):
        fail("multiply by a², not a: the score is a (y − p), and the information is its variance a² p (1 − p)")
    if np.allclose(got, p, atol=1e-8) or np.allclose(got, a ** 2 * p, atol=1e-8):
        fail("the information is largest where the answer is most uncertain: include the factor p (1 − p)")
    if not np.allclose(got, expected, atol=1e-8):
        fail("the values differ from a² σ(a(θ − b)) (1 − σ(a(θ − b))); check the sign inside the sigmoid")
    return passed("your item information is what course_lib.baselines.irt.fisher_information computes; "
                  "each item is most informative at θ = b, where it gives a²/4")


# ----------------------------------------------------------------------------- exercise 2

def check_next_item(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(theta_hat, a, b, asked)`` -> index of the most informative item not yet asked.

    ``theta_hat`` is a float, ``a, b`` NumPy arrays ``[items]``, ``asked`` a list of item indices.
    """
    if fn is None:
        return _todo("define next_item(theta_hat, a, b, asked) and pass it to the check")
    forbid_calls(fn, _INFORMATION, "the max-information rule")
    rng = fresh_rng()
    while True:                        # a bank where, at the first θ̂, "closest difficulty" is not the answer
        a, b = rng.uniform(0.4, 2.5, 30), rng.normal(0, 1, 30)
        thetas = [float(t) for t in np.sort(rng.uniform(-2, 2, 3)).round(3)]
        if _next_items(thetas[0], a, b)[1] != _next_items(thetas[0], a, b, by_difficulty=True)[1]:
            break
    for theta_hat in thetas:
        p = 1 / (1 + np.exp(-a * (theta_hat - b)))
        asked, expected = _next_items(theta_hat, a, b)
        got = _call(fn, theta_hat, a, b, list(asked), what=f"with theta_hat={theta_hat}")
        if got is None:
            return _todo("your function returns None; return one item index")
        try:
            got = int(got)
        except Exception:  # noqa: BLE001
            fail(f"return a single item index (an int), got {got!r}")
        if got in asked:
            fail(f"item {got} was already asked: a test never asks the same item twice; leave out `asked`")
        if got == _next_items(theta_hat, a, b, by_difficulty=True)[1] and got != expected:
            fail("you picked the item whose difficulty is closest to θ̂; that ignores discrimination a. "
                 "Maximise a² p (1 − p) instead")
        if got == int(np.argmax(np.where(np.isin(np.arange(30), asked), -np.inf, p * (1 - p)))) and got != expected:
            fail("you maximised p (1 − p); weight it by a² so that sharper items count more")
        if got != expected:
            fail(f"at θ̂ = {theta_hat} the most informative unasked item is {expected}, you chose {got}")
    return passed("your rule picks the items course_lib.adaptive.cat.select_items('max_information', ...) picks")


def _next_items(theta_hat: float, a: np.ndarray, b: np.ndarray, by_difficulty: bool = False) -> tuple[list[int], int]:
    """Private reference of exercise 2: the two most informative items (taken as asked) and the next one.

    ``by_difficulty`` picks the next item by the usual slip instead: the difficulty closest to θ̂.
    """
    p = 1 / (1 + np.exp(-a * (theta_hat - b)))
    info = a ** 2 * p * (1 - p)
    asked = [int(np.argmax(info)), int(np.argsort(info)[-2])]
    score = -np.abs(b - theta_hat) if by_difficulty else info
    return asked, int(np.argmax(np.where(np.isin(np.arange(len(a)), asked), -np.inf, score)))


# ----------------------------------------------------------------------------- exercise 3

def _bkt_reference(p, correct, learn, guess, slip, forget):
    like_m = np.where(correct, 1 - slip, slip)
    like_n = np.where(correct, guess, 1 - guess)
    post = p * like_m / (p * like_m + (1 - p) * like_n)
    return post * (1 - forget) + (1 - post) * learn


def check_bkt_update(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(p_mastered, correct, learn, guess, slip, forget)`` = P(mastered) before the next try.

    Condition on the answer with Bayes' rule, then apply the learn / forget transition.
    """
    if fn is None:
        return _todo("define bkt_update(p_mastered, correct, learn, guess, slip, forget) and pass it to the check")
    forbid_calls(fn, _BELIEF, "the Bayes update and the transition")
    rng = fresh_rng()
    cases = []
    for y in (1, 0, 0, 1):
        p, learn, guess, slip = rng.uniform(0.05, 0.9), rng.uniform(0.05, 0.4), rng.uniform(0.1, 0.3), rng.uniform(0.02, 0.2)
        cases.append(tuple(round(float(v), 3) for v in (p, y, learn, guess, slip, rng.uniform(0.01, 0.1))))
    for p, y, learn, guess, slip, forget in cases:
        y = int(y)
        got = _call(fn, p, y, learn, guess, slip, forget, what=f"with p={p}, correct={y}")
        if got is None:
            return _todo("your function returns None; return the updated probability")
        got = as_number(got, "the updated probability")
        expected = _bkt_reference(p, y, learn, guess, slip, forget)
        like_m, like_n = (1 - slip, guess) if y else (slip, 1 - guess)
        post = p * like_m / (p * like_m + (1 - p) * like_n)
        if np.isclose(got, post, atol=1e-9) and not np.isclose(post, expected):
            fail("that is P(mastered | answer) — now apply the transition: a mastered skill may be forgotten "
                 "(× (1 − forget)) and an unmastered one learned (+ (1 − P) · learn)")
        if np.isclose(got, p * (1 - forget) + (1 - p) * learn, atol=1e-9) and not np.isclose(got, expected):
            fail("you applied the transition but ignored the answer: first condition on it with Bayes' rule")
        if not np.isclose(got, expected, atol=1e-6):
            fail(f"for P = {p}, correct = {y}, learn = {learn}, guess = {guess}, slip = {slip}, forget = {forget} "
                 f"expected {expected:.4f}, got {got:.4f}; P(correct | mastered) = 1 − slip and "
                 f"P(correct | not mastered) = guess")
    return passed("your knowledge-tracing update is the exact belief course_lib.adaptive.classroom tracks")


# ----------------------------------------------------------------------------- exercise 4

def check_em_step(fn: Callable | None) -> bool:
    """Exercise 4: ``fn(lik [N, H], w [H])`` = one EM step on the prior weights (meta-learning the prior).

    ``lik[n, h]`` = P(answers of past learner n | hypothesis h); the new weights are the average over
    learners of each learner's posterior over hypotheses.
    """
    if fn is None:
        return _todo("define em_step(lik, w) and pass it to the check")
    forbid_calls(fn, {"course_lib.adaptive.classroom.meta_learn_prior": classroom.meta_learn_prior},
                 "one EM step on the weights")
    rng = fresh_rng()
    n, h = int(rng.integers(30, 80)), int(rng.integers(6, 10))
    lik = rng.random((n, h)) ** 3
    w = rng.dirichlet(np.ones(h))
    got = _call(fn, lik.copy(), w.copy(), what=f"with lik [{n}, {h}] and w [{h}]")
    if got is None:
        return _todo("your function returns None; return the new weights [H]")
    got = as_array(got, "the result")
    post = w * lik / (lik @ w)[:, None]
    expected = post.mean(0)
    if got.shape != (h,):
        fail(f"return one weight per hypothesis, shape ({h},), got {got.shape}")
    if np.allclose(got, lik.mean(0) / lik.mean(0).sum(), atol=1e-9):
        fail("you averaged the likelihoods; weight them by the current prior and normalise per learner first "
             "(each learner's posterior over hypotheses), then average the posteriors")
    if np.allclose(got, post.sum(0), atol=1e-9):
        fail("sum over learners divided by nothing: average the posteriors (divide by N) so the weights sum to 1")
    if not np.isclose(got.sum(), 1.0, atol=1e-6):
        fail(f"the new weights must sum to 1, yours sum to {got.sum():.4f}")
    if not np.allclose(got, expected, atol=1e-8):
        fail("the weights differ from mean_n [w_h lik[n, h] / Σ_h' w_h' lik[n, h']]")
    return passed("one EM step of course_lib.adaptive.classroom.meta_learn_prior: the marginal likelihood can only go up")


# ----------------------------------------------------------------------------- exercise 5

def check_plan_one_skill(fn: Callable | None) -> bool:
    """Exercise 5: ``fn(learn, forget, depth) -> [2]``: Q_depth(z, practise) for a one-skill curriculum.

    z = 0 (not mastered) or 1; reward after each activity = 1 if mastered; V_0 = 0 and
    Q_d(z) = Σ_z' P(z' | z) [r(z') + V_{d−1}(z')] with V_{d−1} = Q_{d−1} (one action only).
    The answer must equal what ``course_lib.adaptive.planning.plan_values`` computes on that curriculum
    (which it may not call).
    """
    if fn is None:
        return _todo("define plan_one_skill(learn, forget, depth) and pass it to the check")
    forbid_calls(fn, {"course_lib.adaptive.planning.plan_values": planning.plan_values,
                      "course_lib.adaptive.planning.LookaheadPolicy": planning.LookaheadPolicy},
                 "the value iteration for one skill")
    rng = fresh_rng()
    learn, forget = (round(float(v), 3) for v in rng.uniform(0.05, 0.5, 2) * [1.0, 0.3])
    cases = [(learn, 0.0, 1), (learn, 0.0, 2), (learn, forget, int(rng.integers(3, 8))),
             (round(float(rng.uniform(0.1, 0.6)), 3), forget, int(rng.integers(8, 16)))]
    for learn, forget, depth in cases:
        got = _call(fn, learn, forget, depth, what=f"with learn={learn}, forget={forget}, depth={depth}")
        if got is None:
            return _todo("your function returns None; return [Q(z=0), Q(z=1)]")
        got = as_array(got, "the result").ravel()
        want = _plan_one_skill(learn, forget, depth)
        if got.shape != (2,):
            fail(f"return two values, Q for z = 0 and z = 1; got shape {got.shape}")
        if depth > 1 and np.allclose(got, _plan_one_skill(learn, forget, 1)):
            fail("that is the one-step value: add the value of the remaining depth − 1 activities, V_{d−1}(z')")
        if not np.allclose(got, want, atol=1e-9):
            fail(f"learn={learn}, forget={forget}, depth={depth}: expected {np.round(want, 4).tolist()}, "
                 f"got {np.round(got, 4).tolist()}")
    return passed("your value iteration gives what course_lib.adaptive.planning.plan_values gives")


def _plan_one_skill(learn: float, forget: float, depth: int) -> np.ndarray:
    """Private reference of exercise 5: [Q_D(z=0), Q_D(z=1)] by the recursion of chapter 07, section 10."""
    q = np.zeros(2)
    for _ in range(depth):
        q = np.array([learn * (1 + q[1]) + (1 - learn) * q[0], (1 - forget) * (1 + q[1]) + forget * q[0]])
    return q


# ----------------------------------------------------------------------------- exercise 6

def check_feedback_posterior(fn: Callable | None) -> bool:
    """Exercise 6: ``fn(prior [K], profiles [K, A], actions [T], rewards [T]) -> [K]``: P(component | rewards).

    Bayes' rule with Bernoulli rewards: prior_k Π_t p_k,a_t^y_t (1 − p_k,a_t)^(1 − y_t), normalised —
    what ``course_lib.adaptive.feedback.MixtureThompson`` tracks for every learner (the answer may not call it).
    """
    if fn is None:
        return _todo("define feedback_posterior(prior, profiles, actions, rewards) and pass it to the check")
    forbid_calls(fn, {"course_lib.adaptive.feedback.MixtureThompson": feedback.MixtureThompson},
                 "Bayes' rule over the components")
    rng = fresh_rng()
    k, n_actions, t = int(rng.integers(3, 6)), int(rng.integers(3, 6)), int(rng.integers(8, 16))
    profiles = rng.uniform(0.1, 0.9, (k, n_actions))
    prior = rng.dirichlet(np.full(k, 2.0))
    actions, rewards = rng.integers(0, n_actions, t), rng.integers(0, 2, t)
    got = _call(fn, prior.copy(), profiles.copy(), actions.copy(), rewards.copy(), what=f"with K = {k}, T = {t}")
    if got is None:
        return _todo("your function returns None; return the posterior [K]")
    got = as_array(got, "the result").ravel()
    log_w = np.log(prior) + np.where(rewards > 0, np.log(profiles[:, actions]), np.log1p(-profiles[:, actions])).sum(1)
    want = np.exp(log_w - log_w.max())
    want /= want.sum()
    if got.shape != (k,):
        fail(f"return one probability per component, shape ({k},), got {got.shape}")
    if not np.isclose(got.sum(), 1, atol=1e-6):
        fail(f"a posterior sums to 1; yours sums to {got.sum():.4f}: normalise")
    lik_only = want / prior / (want / prior).sum()
    if np.allclose(got, lik_only, atol=1e-6):
        fail("you forgot the prior: multiply the likelihood by prior_k before normalising")
    if not np.allclose(got, want, atol=1e-6):
        fail(f"expected {np.round(want, 4).tolist()}, got {np.round(got, 4).tolist()}: a reward y for action a "
             "multiplies component k's weight by p[k, a] if y = 1 and by 1 − p[k, a] if y = 0")
    return passed("your posterior is what MixtureThompson tracks for each learner")
