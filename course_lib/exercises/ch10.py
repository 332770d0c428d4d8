"""Checks for chapter 10 (Real-time personalization).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer. Every check draws fresh random inputs at each
call and rejects an answer that calls the implementation the exercise asks for.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import as_index, as_tensor, call as _call, fail, fresh_generator, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

__all__ = ["check_distillation_loss", "check_mean_embedding", "check_served_next_item"]


# ------------------------------------------------------------------------------------ exercise 1

def check_distillation_loss(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(student_logits [B, items], teacher_prob [B, items]) -> scalar`` soft cross-entropy.

    Right: the mean over learners and items of −[p log σ(z) + (1 − p) log(1 − σ(z))], as
    `course_lib.models.amortized.distillation_loss` (which, like torch's own binary cross-entropy with
    logits, the answer may not call), to 1e-5, on logits as large as ±30.
    """
    from course_lib.models import amortized

    if fn is None:
        return _todo("define soft_bce(student_logits, teacher_prob) and pass it to the check")
    forbid_calls(fn, {"course_lib.models.amortized.distillation_loss": amortized.distillation_loss,
                      "torch.nn.functional.binary_cross_entropy_with_logits":
                          torch.nn.functional.binary_cross_entropy_with_logits,
                      "torch.nn.BCEWithLogitsLoss": torch.nn.BCEWithLogitsLoss},
                 "the soft cross-entropy from log σ(z) and log σ(−z)")
    g = fresh_generator()
    shape = tuple(int(v) for v in torch.randint(2, 9, (2,), generator=g))
    big = torch.tensor([[30.0, -30.0, 30.0, -30.0, 0.0]])[:, torch.randperm(5, generator=g)]   # both signs, and 0
    cases = [(torch.randn(*shape, generator=g), torch.rand(*shape, generator=g)),
             (big, 0.05 + 0.9 * torch.rand(1, 5, generator=g))]
    for z, p in cases:
        out = _call(fn, f"logits of shape {tuple(z.shape)}", z.clone(), p.clone())
        if out is None:
            return _todo("your function returns None; return the loss as a number")
        got = as_tensor(out, "the loss")
        if got.numel() != 1:
            fail(f"return one number (the mean over learners and items), got shape {tuple(got.shape)}")
        want = float(-(p * torch.nn.functional.logsigmoid(z) + (1 - p) * torch.nn.functional.logsigmoid(-z)).mean())
        if not np.isfinite(float(got)):
            fail("your loss is not finite for logits ±30: compute log σ(z) with torch.nn.functional.logsigmoid "
                 "(and log(1 − σ(z)) = log σ(−z)), not log(sigmoid(z)), which underflows to log(0)")
        if abs(float(got) - want) > 1e-5:
            hard = float(torch.nn.functional.binary_cross_entropy_with_logits(z, (p > 0.5).float()))
            hint = (" you used hard labels (p > 0.5): distillation keeps the teacher's soft probabilities"
                    if abs(float(got) - hard) < 1e-5 else " check the signs and that you take the mean, not the sum")
            fail(f"loss {float(got):.6f}, expected {want:.6f};{hint}")
    return passed("the soft cross-entropy: KL(teacher ‖ student) plus a constant, stable for large logits")


# ------------------------------------------------------------------------------------ exercise 2

def check_mean_embedding(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(table [2·items, width], items [n], answers [n]) -> [width]`` mean answer embedding.

    Right: the mean over the n answers of row 2·item + answer of the table (the `AnswerSetEncoder`
    without its count feature, which the answer may not call); for n = 0 a vector of zeros.
    """
    from course_lib.models import amortized

    if fn is None:
        return _todo("define mean_embedding(table, items, answers) and pass it to the check")
    forbid_calls(fn, {"course_lib.models.amortized.AnswerSetEncoder": amortized.AnswerSetEncoder,
                      "course_lib.models.amortized.AmortizedAdapter": amortized.AmortizedAdapter},
                 "the mean of the answers' rows")
    g = fresh_generator()
    n_items, width = (int(v) for v in torch.randint(5, 10, (2,), generator=g))
    enc = amortized.AnswerSetEncoder(n_items, width)
    with torch.no_grad():
        enc.embed.weight.copy_(torch.randn(2 * n_items, width, generator=g))
    table = enc.embed.weight.detach().clone()
    n = int(torch.randint(3, 8, (1,), generator=g))
    draws = [(torch.randint(n_items, (n,), generator=g).tolist(), torch.randint(2, (n,), generator=g).tolist()),
             ([int(torch.randint(n_items, (1,), generator=g))], [0]), ([], [])]
    draws[0][1][0] = 1 - draws[0][1][-1]             # a right and a wrong answer in the first set
    for items, answers in draws:
        it, ans = torch.tensor(items, dtype=torch.long), torch.tensor(answers, dtype=torch.float32)
        out = _call(fn, f"items={items}, answers={answers}", table.clone(), it.clone(), ans.clone())
        if out is None:
            return _todo("your function returns None; return the mean embedding")
        got = as_tensor(out, "the mean embedding").float()
        if tuple(got.shape) != (width,):
            fail(f"return one vector of width {width}, got shape {tuple(got.shape)}")
        if not items:
            if not torch.equal(got, torch.zeros(width)):
                fail(f"with no answer return zeros (the encoder's convention), got {got.tolist()} "
                     "(a mean over nothing is NaN: divide by max(n, 1))")
            continue
        want = enc(it[None], ans[None], torch.ones(1, len(items)))[0, :width].detach()
        if not torch.allclose(got, want, atol=1e-5):
            swapped = table[2 * it + (1 - ans.long())].mean(0)
            hint = (" the row of (item, answer) is 2·item + answer: you swapped right and wrong"
                    if torch.allclose(got, swapped, atol=1e-5) else " take rows 2·item + answer and average them")
            fail(f"got {got.tolist()}, expected {want.tolist()};{hint}")
    return passed("mean of per-answer embeddings: order-free, any number of answers, one pass")


# ------------------------------------------------------------------------------------ exercise 3

def check_served_next_item(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(prob [items], item_a [items, dims], answered list) -> int`` the served next item.

    Right: the unanswered item with the largest p(1 − p)‖aⱼ‖² (chapter 07's max-information rule as
    the service applies it), as `course_lib.adaptive.cat.select_items` (which the answer may not call).
    """
    from course_lib.adaptive import cat

    if fn is None:
        return _todo("define next_item(prob, item_a, answered) and pass it to the check")
    forbid_calls(fn, {"course_lib.adaptive.cat.select_items": cat.select_items}, "the max-information rule")
    g = fresh_generator()
    while True:                         # items where "p closest to ½" and "most information" disagree
        prob = torch.rand(12, generator=g) * 0.9 + 0.05
        item_a = torch.randn(12, int(torch.randint(1, 4, (1,), generator=g)), generator=g)
        info = prob * (1 - prob) * item_a.pow(2).sum(1)
        if int(info.argmax()) != int((prob - 0.5).abs().argmin()):
            break
    best = int(info.argmax())
    for answered in ([], [best], [best, int(info.argsort()[-2])]):
        out = _call(fn, f"answered={answered}", prob.clone(), item_a.clone(), list(answered))
        if out is None:
            return _todo("your function returns None; return the index of the next item")
        out = as_index(out, "the next item")
        available = torch.ones(1, 12, dtype=torch.bool)
        available[0, answered] = False
        want = int(torch.where(available[0], info, -torch.inf).argmax())
        if out in answered:
            fail(f"item {out} was already answered; never ask an item twice")
        if out != want:
            by_p = int(torch.where(available[0], -(prob - 0.5).abs(), -torch.inf).argmax())
            hint = (" you picked the item with p closest to ½: that ignores the loadings aⱼ"
                    if out == by_p else " information is p(1 − p) times the squared norm of the item's row of a")
            fail(f"with answered={answered} the next item is {want}, got {out};{hint}")
    return passed("max information over the unanswered items: the rule the service's /next-item applies")
