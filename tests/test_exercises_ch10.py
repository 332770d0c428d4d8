"""Chapter 10's exercise checks: the solutions pass, the placeholders report, the usual slips fail."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.exercises import ExerciseError, ch10


def soft_bce(z, p):
    return -(p * F.logsigmoid(z) + (1 - p) * F.logsigmoid(-z)).mean()


def mean_embedding(table, items, answers):
    if len(items) == 0:
        return torch.zeros(table.shape[1])
    return table[2 * items + answers.long()].mean(0)


def next_item(prob, item_a, answered):
    info = prob * (1 - prob) * item_a.pow(2).sum(1)
    info[list(answered)] = -float("inf")
    return int(info.argmax())


def test_solutions_pass():
    assert ch10.check_distillation_loss(soft_bce)
    assert ch10.check_mean_embedding(mean_embedding)
    assert ch10.check_served_next_item(next_item)


@pytest.mark.parametrize("check", [ch10.check_distillation_loss, ch10.check_mean_embedding, ch10.check_served_next_item])
def test_placeholders_report_not_filled_in(check, capsys):
    assert check(None) is False and "Not filled in" in capsys.readouterr().out
    assert check(lambda *a: None) is False


@pytest.mark.parametrize("fn, words", [
    (lambda z, p: -(p * torch.log(torch.sigmoid(z)) + (1 - p) * torch.log(1 - torch.sigmoid(z))).mean(), "not finite"),
    (lambda z, p: soft_bce(z, (p > 0.5).float()), "hard labels"),
    (lambda z, p: soft_bce(z, p) * z.numel(), "mean, not the sum"),
    (lambda z, p: torch.zeros(2), "one number"),
])
def test_distillation_loss_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch10.check_distillation_loss(fn)


@pytest.mark.parametrize("fn, words", [
    (lambda t, i, a: t[2 * i + (1 - a.long())].mean(0) if len(i) else torch.zeros(t.shape[1]), "swapped"),
    (lambda t, i, a: t[2 * i + a.long()].mean(0), "zeros"),
    (lambda t, i, a: t[2 * i + a.long()].sum(0) if len(i) else torch.zeros(t.shape[1]), "average"),
])
def test_mean_embedding_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch10.check_mean_embedding(fn)


def _closest_to_half(prob, item_a, answered):
    d = -(prob - 0.5).abs()
    d[list(answered)] = -float("inf")
    return int(d.argmax())


@pytest.mark.parametrize("fn, words", [
    (lambda p, a, answered: int((p * (1 - p) * a.pow(2).sum(1)).argmax()), "already answered"),
    (_closest_to_half, "closest to ½"),
])
def test_next_item_slips(fn, words):
    with pytest.raises(ExerciseError, match=words):
        ch10.check_served_next_item(fn)


# ----------------------------------------------------------------------------- the notebook's own solutions
from notebook_solutions import notebook_solutions  # noqa: E402

SOLUTIONS = notebook_solutions("10")


@pytest.mark.parametrize("check, name", [(ch10.check_distillation_loss, "soft_bce_solution"),
                                         (ch10.check_mean_embedding, "mean_embedding_solution"),
                                         (ch10.check_served_next_item, "next_item_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def test_answers_that_call_the_library_are_rejected():
    from course_lib.adaptive.cat import select_items
    from course_lib.models.amortized import AnswerSetEncoder, distillation_loss

    def via_encoder(table, items, answers):
        enc = AnswerSetEncoder(table.shape[0] // 2, table.shape[1])
        with torch.no_grad():
            enc.embed.weight.copy_(table)
        return enc(items[None], answers[None], torch.ones(1, len(items)))[0, :-1]

    def via_select_items(prob, item_a, answered):
        available = torch.ones(1, len(prob), dtype=torch.bool)
        available[0, list(answered)] = False
        return int(select_items("max_information", available, (prob * (1 - prob) * item_a.pow(2).sum(1))[None])[0])

    for check, answer, name in [
            (ch10.check_distillation_loss, lambda z, p: distillation_loss(z, p), "distillation_loss"),
            (ch10.check_distillation_loss, lambda z, p: F.binary_cross_entropy_with_logits(z, p),
             "binary_cross_entropy_with_logits"),
            (ch10.check_mean_embedding, via_encoder, "AnswerSetEncoder"),
            (ch10.check_served_next_item, via_select_items, "select_items")]:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(prob, item_a, answered):
        seen.append(prob.clone())
        return next_item(prob, item_a, answered)

    ch10.check_served_next_item(recording)
    ch10.check_served_next_item(recording)
    assert not torch.equal(seen[0], seen[-1])
