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
    assert ch05.check_eap(None) is False


def test_eap_reference_is_what_irt_computes():
    g = torch.Generator().manual_seed(0)
    a, b = 0.4 + 1.6 * torch.rand(8, generator=g), torch.randn(8, generator=g)
    for items, answers in [([0, 3, 5], [1.0, 0.0, 1.0]), ([1, 2, 4, 6, 7], [1.0, 1.0, 1.0, 0.0, 1.0])]:
        it, ans = torch.tensor(items), torch.tensor(answers)
        assert ch05._grid_posterior_mean(a, b, it, ans) == pytest.approx(eap_ability(a, b, it, ans)[0], abs=2e-3)


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


def test_inner_step_reference_is_maml_adapt():
    from course_lib.algorithms import MAML
    from course_lib.models.meta_irt import MetaIRT

    model = MetaIRT(6, dims=1, init_d=torch.tensor([0.5, -0.3, 1.0, 0.0, -1.2, 0.4]), seed=3)
    with torch.no_grad():
        model.ability.fill_(0.3)
    a, d = model.item_a.detach()[:, 0].clone(), model.item_d.detach().clone()
    it, ans = torch.tensor([0, 2, 5]), torch.tensor([1.0, 0.0, 1.0])
    want = float(MAML(model, loss="bce", alpha=0.8, steps=1, adapt=["ability"]).adapt(it, ans)["ability"])
    assert float(right_step(0.3, a, d, it, ans, 0.8)) == pytest.approx(want, abs=1e-6)


# ----------------------------------------------------------------------------- the notebook's own solutions
from notebook_solutions import notebook_solutions  # noqa: E402

SOLUTIONS = notebook_solutions("05")


@pytest.mark.parametrize("check, name", [(ch05.check_scoring, "score_solution"), (ch05.check_eap, "eap_solution"),
                                         (ch05.check_inner_step, "inner_step_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def test_answers_that_call_the_library_are_rejected():
    from course_lib.algorithms import MAML
    from course_lib.baselines import irt
    from course_lib.models.meta_irt import MetaIRT

    def via_maml(ability, a, d, items, answers, alpha):
        model = MetaIRT(len(a), dims=1)
        with torch.no_grad():
            model.item_a.copy_(a[:, None])
            model.item_d.copy_(d)
            model.ability.fill_(ability)
        return float(MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]).adapt(items, answers)["ability"])

    def via_autograd(ability, a, d, items, answers, alpha):
        th = torch.tensor(float(ability), requires_grad=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a[items] * th + d[items], answers)
        return float(th - alpha * torch.autograd.grad(loss, th)[0])

    for check, answer, name in [(ch05.check_eap, lambda a, b, i, y: irt.eap_ability(a, b, i, y)[0], "eap_ability"),
                                (ch05.check_eap, lambda a, b, i, y: float(irt.eap_ability_batch(a, b, i[None], y[None])[0][0]),
                                 "eap_ability_batch"),
                                (ch05.check_inner_step, via_maml, "MAML"),
                                (ch05.check_inner_step, via_autograd, "torch.autograd.grad")]:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(chosen, keys):
        seen.append(chosen.clone())
        return right_score(chosen, keys)

    ch05.check_scoring(recording)
    ch05.check_scoring(recording)
    assert seen[0].shape != seen[1].shape or not torch.equal(seen[0].nan_to_num(-1), seen[1].nan_to_num(-1))
