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
        ch07.check_feedback_posterior(lambda prior, prof, a, y: feedback_posterior(np.ones(len(prior)), prof, a, y))
    with pytest.raises(ExerciseError, match="sums to"):
        ch07.check_feedback_posterior(lambda prior, prof, a, y: 2 * feedback_posterior(prior, prof, a, y))


# ----------------------------------------------------------------------------- the private references

def test_private_references_agree_with_course_lib():
    import torch

    from course_lib.adaptive.classroom import Curriculum
    from course_lib.adaptive.feedback import MixtureThompson
    from course_lib.adaptive.planning import plan_values
    from course_lib.adaptive.policies import ThompsonPolicy
    from course_lib.baselines.irt import fisher_information

    rng = np.random.default_rng(0)
    theta, a, b = rng.normal(size=(5, 1)), rng.uniform(0.4, 2.5, 7), rng.normal(size=7)
    assert np.allclose(item_information(theta, a, b),
                       fisher_information(torch.tensor(theta), torch.tensor(a), torch.tensor(b)).numpy())
    one = Curriculum(("s",), ((),), (1.0,))
    for p, y, learn, guess, slip, forget in [(0.3, 1, 0.2, 0.2, 0.1, 0.0), (0.8, 0, 0.1, 0.25, 0.05, 0.05)]:
        pol = ThompsonPolicy(one, np.array([[p, learn, guess, slip, forget]]))
        state = pol.update(pol.begin(1, np.zeros(1, int)), np.zeros(1, int), np.array([y]))
        assert np.isclose(pol.mastery_estimate(state)[0, 0], ch07._bkt_reference(p, y, learn, guess, slip, forget))
    for learn, forget, depth in [(0.3, 0.0, 2), (0.2, 0.05, 5), (0.5, 0.1, 12)]:
        want = plan_values(one, np.array([[0.2, learn, 0.1, 0.1, forget]]), depth)[0, :, 0]
        assert np.allclose(ch07._plan_one_skill(learn, forget, depth), want)
    profiles, prior = rng.uniform(0.1, 0.9, (3, 4)), np.array([0.5, 0.3, 0.2])
    actions, rewards = rng.integers(0, 4, 12), rng.integers(0, 2, 12)
    policy = MixtureThompson(profiles, prior[None])
    state = policy.begin(np.zeros(1, int))
    for act, y in zip(actions, rewards):
        state = policy.update(state, np.array([act]), np.array([y]))
    tracked = np.exp(state["log_w"][0] - state["log_w"][0].max())
    assert np.allclose(feedback_posterior(prior, profiles, actions, rewards), tracked / tracked.sum())


# ----------------------------------------------------------------------------- the notebook's own solutions
from notebook_solutions import notebook_solutions  # noqa: E402

SOLUTIONS = notebook_solutions("07")


@pytest.mark.parametrize("check, name", [(ch07.check_item_information, "item_information_solution"),
                                         (ch07.check_next_item, "next_item_solution"),
                                         (ch07.check_bkt_update, "bkt_update_solution"),
                                         (ch07.check_em_step, "em_step_solution"),
                                         (ch07.check_plan_one_skill, "plan_one_skill_solution"),
                                         (ch07.check_feedback_posterior, "feedback_posterior_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def _via_library():
    """One answer per exercise that gets the right numbers by calling course_lib's implementation."""
    import torch

    from course_lib.adaptive.cat import select_items
    from course_lib.adaptive.classroom import Curriculum, meta_learn_prior
    from course_lib.adaptive.feedback import MixtureThompson
    from course_lib.adaptive.planning import plan_values
    from course_lib.adaptive.policies import ThompsonPolicy
    from course_lib.baselines.irt import fisher_information

    def information(theta, a, b):
        return fisher_information(torch.tensor(theta), torch.tensor(a), torch.tensor(b)).numpy()

    def next_(theta_hat, a, b, asked):
        info = a ** 2 / (4 * np.cosh(a * (theta_hat - b) / 2) ** 2)
        available = torch.ones(1, len(a), dtype=torch.bool)
        available[0, list(asked)] = False
        return int(select_items("max_information", available, torch.tensor(info[None])).item())

    def bkt(p, y, learn, guess, slip, forget):
        pol = ThompsonPolicy(Curriculum(("s",), ((),), (1.0,)), np.array([[p, learn, guess, slip, forget]]))
        state = pol.update(pol.begin(1, np.zeros(1, int)), np.zeros(1, int), np.array([y]))
        return float(pol.mastery_estimate(state)[0, 0])

    def em(lik, w):
        return meta_learn_prior(lik, w)   # any call of it is rejected before it runs

    def plan(learn, forget, depth):
        return plan_values(Curriculum(("s",), ((),), (1.0,)), np.array([[0.2, learn, 0.1, 0.1, forget]]), depth)[0, :, 0]

    def posterior(prior, profiles, actions, rewards):
        policy = MixtureThompson(profiles, prior[None])
        state = policy.begin(np.zeros(1, int))
        for act, y in zip(actions, rewards):
            state = policy.update(state, np.array([act]), np.array([y]))
        w = np.exp(state["log_w"][0] - state["log_w"][0].max())
        return w / w.sum()

    return [(ch07.check_item_information, information, "fisher_information"),
            (ch07.check_next_item, next_, "select_items"), (ch07.check_bkt_update, bkt, "ThompsonPolicy"),
            (ch07.check_em_step, em, "meta_learn_prior"), (ch07.check_plan_one_skill, plan, "plan_values"),
            (ch07.check_feedback_posterior, posterior, "MixtureThompson")]


def test_answers_that_call_the_library_are_rejected():
    for check, answer, name in _via_library():
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(lik, w):
        seen.append(lik.copy())
        return em_step(lik, w)

    ch07.check_em_step(recording)
    ch07.check_em_step(recording)
    assert seen[0].shape != seen[1].shape or not np.array_equal(seen[0], seen[1])
