"""Chapter 07 exercise checks: right answers pass, placeholders report, typical mistakes fail clearly."""

import numpy as np
import pytest

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch07


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ----------------------------------------------------------------------------- the solutions

def item_information(theta, a, b):
    p = sigmoid(a * (theta - b))
    return a ** 2 * p * (1 - p)


def next_item(theta_hat, a, b, asked):
    info = item_information(theta_hat, a, b)
    info[list(asked)] = -np.inf
    return int(np.argmax(info))


def bkt_update(p, correct, learn, guess, slip, forget):
    like_m = 1 - slip if correct else slip
    like_n = guess if correct else 1 - guess
    post = p * like_m / (p * like_m + (1 - p) * like_n)
    return post * (1 - forget) + (1 - post) * learn


def em_step(lik, w):
    post = w * lik
    post /= post.sum(1, keepdims=True)
    return post.mean(0)


@pytest.mark.parametrize("check, solution", [(ch07.check_item_information, item_information),
                                             (ch07.check_next_item, next_item),
                                             (ch07.check_bkt_update, bkt_update),
                                             (ch07.check_em_step, em_step)])
def test_solutions_pass_and_placeholders_do_not_raise(check, solution, capsys):
    assert check(solution) is True
    assert "PASS" in capsys.readouterr().out
    assert check(None) is False
    assert check(lambda *args: None) is False
    assert "Not filled in yet" in capsys.readouterr().out


# ----------------------------------------------------------------------------- typical mistakes

@pytest.mark.parametrize("wrong, hint", [
    (lambda t, a, b: sigmoid(a * (t - b)) * (1 - sigmoid(a * (t - b))), "square of its discrimination"),
    (lambda t, a, b: a * sigmoid(a * (t - b)) * (1 - sigmoid(a * (t - b))), "multiply by a²"),
    (lambda t, a, b: a ** 2 * sigmoid(a * (b - t)) * (1 - sigmoid(a * (b - t))) + 0.01, "differ"),
    (lambda t, a, b: np.zeros(3), "broadcast"),
    (lambda t, a, b: 1 / 0, "ZeroDivisionError"),
])
def test_item_information_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ch07.check_item_information(wrong)


def closest_difficulty(theta_hat, a, b, asked):
    d = np.abs(b - theta_hat)
    d[list(asked)] = np.inf
    return int(np.argmin(d))


@pytest.mark.parametrize("wrong, hint", [
    (lambda t, a, b, asked: int(np.argmax(item_information(t, a, b))), "already asked"),
    (closest_difficulty, "closest to θ̂|differs|most informative"),
    (lambda t, a, b, asked: "seven", "single item index"),
])
def test_next_item_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ch07.check_next_item(wrong)


def posterior_only(p, correct, learn, guess, slip, forget):
    like_m = 1 - slip if correct else slip
    like_n = guess if correct else 1 - guess
    return p * like_m / (p * like_m + (1 - p) * like_n)


@pytest.mark.parametrize("wrong, hint", [
    (posterior_only, "apply the transition"),
    (lambda p, y, learn, g, s, f: p * (1 - f) + (1 - p) * learn, "ignored the answer"),
    (lambda p, y, learn, g, s, f: bkt_update(p, y, learn, s, g, f), "expected"),   # guess and slip swapped
])
def test_bkt_update_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ch07.check_bkt_update(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda lik, w: lik.mean(0) / lik.mean(0).sum(), "averaged the likelihoods"),
    (lambda lik, w: (w * lik / (lik @ w)[:, None]).sum(0), "average the posteriors"),
    (lambda lik, w: w, "differ"),
    (lambda lik, w: np.ones(5) / 5, "shape"),
])
def test_em_step_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ch07.check_em_step(wrong)


# ----------------------------------------------------------------------------- exercises 5 and 6

def plan_one_skill(learn, forget, depth):
    q = np.zeros(2)
    for _ in range(depth):
        v = q.copy()
        q = np.array([(1 - learn) * (0 + v[0]) + learn * (1 + v[1]),
                      (1 - forget) * (1 + v[1]) + forget * (0 + v[0])])
    return q


def feedback_posterior(prior, profiles, actions, rewards):
    p = profiles[:, actions]                                          # [K, T]
    w = prior * np.prod(np.where(np.asarray(rewards) > 0, p, 1 - p), axis=1)
    return w / w.sum()


def test_plan_one_skill_right_and_wrong(capsys):
    assert ch07.check_plan_one_skill(None) is False
    assert ch07.check_plan_one_skill(lambda learn, forget, depth: None) is False
    assert ch07.check_plan_one_skill(plan_one_skill) is True
    with pytest.raises(ExerciseError, match="one-step value"):
        ch07.check_plan_one_skill(lambda learn, forget, depth: plan_one_skill(learn, forget, 1))
    with pytest.raises(ExerciseError, match="expected"):
        ch07.check_plan_one_skill(lambda learn, forget, depth: plan_one_skill(learn, 0.0, depth) + 0.01)


def test_feedback_posterior_right_and_wrong():
    assert ch07.check_feedback_posterior(None) is False
    assert ch07.check_feedback_posterior(feedback_posterior) is True
    with pytest.raises(ExerciseError, match="forgot the prior"):
        ch07.check_feedback_posterior(lambda prior, prof, a, y: feedback_posterior(np.ones(3), prof, a, y))
    with pytest.raises(ExerciseError, match="sums to"):
        ch07.check_feedback_posterior(lambda prior, prof, a, y: 2 * feedback_posterior(prior, prof, a, y))
