"""Chapter 05 checks: right answers pass, placeholders report, typical wrong answers fail helpfully."""

from __future__ import annotations

import pytest
import torch

from course_lib.baselines.irt import eap_ability
from course_lib.exercises import ExerciseError, ch05

# ------------------------------------------------------------------------------------ exercise 1


def right_score(chosen, keys):
    out = (chosen == torch.tensor(keys, dtype=chosen.dtype)).float()
    out[torch.isnan(chosen)] = float("nan")
    return out


def test_scoring_passes_and_placeholders():
    assert ch05.check_scoring(right_score) is True
    assert ch05.check_scoring(None) is False
    assert ch05.check_scoring(lambda c, k: None) is False


@pytest.mark.parametrize("wrong, match", [
    (lambda c, k: (c == torch.tensor(k, dtype=c.dtype)).float(), "must stay NaN"),
    (lambda c, k: c == torch.tensor(k, dtype=c.dtype), "float tensor"),
    (lambda c, k: right_score(c, k)[:, :2], "shape"),
    (lambda c, k: torch.where(torch.isnan(c), c, (c != torch.tensor(k, dtype=c.dtype)).float()), "scores for answered"),
    (lambda c, k: 1 / 0, "ZeroDivisionError"),
])
def test_scoring_fails_typical_mistakes(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        ch05.check_scoring(wrong)


# ------------------------------------------------------------------------------------ exercise 2

def right_eap(a, b, items, answers):
    theta = torch.linspace(-6, 6, 241)
    p = torch.sigmoid(a[items][:, None] * (theta - b[items][:, None]))
    like = torch.where(answers[:, None] == 1, p, 1 - p).prod(0)
    post = like * torch.exp(-theta ** 2 / 2)
    return float((theta * post).sum() / post.sum())


def test_eap_passes():
    assert ch05.check_eap(right_eap) is True
    assert ch05.check_eap(lambda a, b, i, y: eap_ability(a, b, i, y)[0]) is True
    assert ch05.check_eap(None) is False


def flat_prior(a, b, items, answers):
    theta = torch.linspace(-6, 6, 241)
    p = torch.sigmoid(a[items][:, None] * (theta - b[items][:, None]))
    like = torch.where(answers[:, None] == 1, p, 1 - p).prod(0)
    return float((theta * like).sum() / like.sum())


def sign_flip(a, b, items, answers):
    """σ(a(b − θ)) instead of σ(a(θ − b)): the posterior mean comes out mirrored."""
    return -right_eap(a, b, items, answers)


@pytest.mark.parametrize("wrong, match", [
    (flat_prior, "flat prior"),
    (sign_flip, "raise the ability"),
    (lambda a, b, i, y: 0.0, "posterior mean is"),
    (lambda a, b, i, y: float("nan"), "NaN"),
    (lambda a, b, i, y: "high", "one number"),
])
def test_eap_fails_typical_mistakes(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        ch05.check_eap(wrong)


# ------------------------------------------------------------------------------------ exercise 3

def right_step(ability, a, d, items, answers, alpha):
    p = torch.sigmoid(a[items] * ability + d[items])
    return ability + alpha * (a[items] * (answers - p)).mean()


def test_inner_step_passes():
    assert ch05.check_inner_step(right_step) is True
    assert ch05.check_inner_step(None) is False


@pytest.mark.parametrize("wrong, match", [
    (lambda th, a, d, i, y, al: 2 * th - right_step(th, a, d, i, y, al), "wrong sign"),
    (lambda th, a, d, i, y, al: th + al * (a[i] * (y - torch.sigmoid(a[i] * th + d[i]))).sum(), "summed"),
    (lambda th, a, d, i, y, al: th + al * (y - torch.sigmoid(a[i] * th + d[i])).mean(), "adapted ability is"),
])
def test_inner_step_fails_typical_mistakes(wrong, match):
    with pytest.raises(ExerciseError, match=match):
        ch05.check_inner_step(wrong)
