"""Chapter 00 exercise checks: the stored solutions pass, wrong answers and shortcuts fail clearly."""

import random

import numpy as np
import pytest
import torch

from course_lib.exercises import ExerciseError
from course_lib.exercises import ch00


def p_correct(ability, a, b):
    """Stands in for the notebook's own 2PL function of section 2."""
    return 1.0 / (1.0 + np.exp(-a * (np.asarray(ability) - b)))


def right_p(ability, a, b):
    return 1.0 / (1.0 + np.exp(-a * (ability - b)))


def right_ability(p, a, b):
    if not 0 < p < 1:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p}")
    return b + np.log(p / (1 - p)) / a


def right_order(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _fails(check, answer, match):
    with pytest.raises(ExerciseError, match=match):
        check(answer)


def test_solutions_pass_and_placeholders_are_reported(capsys):
    assert ch00.check_p_correct(right_p)
    assert ch00.check_ability_for(right_ability)
    assert ch00.check_learner_order(right_order)
    for check in (ch00.check_p_correct, ch00.check_ability_for, ch00.check_learner_order):
        assert check(None) is False
    assert capsys.readouterr().out.count("Not filled in yet") == 3


def test_p_correct_mistakes():
    c = ch00.check_p_correct
    _fails(c, lambda th, a, b: 1 / (1 + np.exp(-(th - b))), "discrimination a is missing")
    _fails(c, lambda th, a, b: 1 / (1 + np.exp(-a * (b - th))), "sign is flipped")
    _fails(c, lambda th, a, b: 1 / (1 + np.exp(-(a * th - b))), "inside the bracket")
    _fails(c, lambda th, a, b: np.ones(3), "broadcast")
    _fails(c, lambda th, a, b: p_correct(th, a, b), "`p_correct`")


def test_ability_for_mistakes():
    c = ch00.check_ability_for
    _fails(c, lambda p, a, b: b + np.log(p / (1 - p)) * a, "multiplied")
    _fails(c, lambda p, a, b: np.log(p / (1 - p)) / a - b, "plus b")
    _fails(c, lambda p, a, b: b + np.log(p / (1 - p)), "a is missing")
    _fails(c, lambda p, a, b: b + np.log(p / (1 - p)) / a if 0 < p < 1 else float("nan"), "ValueError")

    def uses_notebook(p, a, b):
        from scipy.optimize import brentq
        return brentq(lambda t: p_correct(t, a, b) - p, -50, 50)

    _fails(c, uses_notebook, "`p_correct`")


def test_learner_order_mistakes():
    c = ch00.check_learner_order

    def global_state(n, seed):
        torch.manual_seed(seed)
        return torch.randperm(n)

    _fails(c, global_state, "global random state")
    before = torch.get_rng_state()
    with pytest.raises(ExerciseError):
        c(global_state)
    assert torch.equal(before, torch.get_rng_state()), "the check must restore the state it found"
    _fails(c, lambda n, seed: list(range(n)), "identity")
    _fails(c, lambda n, seed: torch.randperm(n, generator=torch.Generator().manual_seed(0)), "different seeds")
    _fails(c, lambda n, seed: torch.randperm(n, generator=torch.Generator().manual_seed(random.randrange(10**6))),
           "global random state|same seed gave")
    _fails(c, lambda n, seed: torch.arange(n - 1), "every learner")


def test_checks_draw_fresh_inputs():
    seen = []

    def recording(ability, a, b):
        seen.append(a.copy())
        return right_p(ability, a, b)

    ch00.check_p_correct(recording)
    ch00.check_p_correct(recording)
    assert not np.array_equal(seen[0], seen[1])
