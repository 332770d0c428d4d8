"""Checks for chapter 10 (Real-time personalization).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import as_index, as_tensor, call as _call, fail, passed, todo as _todo

__all__ = ["check_distillation_loss", "check_mean_embedding", "check_served_next_item"]


# ------------------------------------------------------------------------------------ exercise 1

def check_distillation_loss(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(student_logits [B, items], teacher_prob [B, items]) -> scalar`` soft cross-entropy.

    Right: the mean over learners and items of −[p log σ(z) + (1 − p) log(1 − σ(z))], as
    `course_lib.models.amortized.distillation_loss`, to 1e-5, on logits as large as ±30.
    """
    from course_lib.models.amortized import distillation_loss

    if fn is None:
        return _todo("define soft_bce(student_logits, teacher_prob) and pass it to the check")
    g = torch.Generator().manual_seed(10)
    cases = [(torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g)),
             (torch.tensor([[30.0, -30.0, 0.0]]), torch.tensor([[0.2, 0.9, 0.5]]))]
    for z, p in cases:
        out = _call(fn, f"logits of shape {tuple(z.shape)}", z.clone(), p.clone())
        if out is None:
            return _todo("your function returns None; return the loss as a number")
        got = as_tensor(out, "the loss")
        if got.numel() != 1:
            fail(f"return one number (the mean over learners and items), got shape {tuple(got.shape)}")
        want = float(distillation_loss(z, p))
        if not np.isfinite(float(got)):
            fail("your loss is not finite for logits ±30: compute log σ(z) with torch.nn.functional.logsigmoid "
                 "(or binary_cross_entropy_with_logits), not log(sigmoid(z)), which underflows to log(0)")
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
    without its count feature); for n = 0 a vector of zeros.
    """
    from course_lib.models.amortized import AnswerSetEncoder

    if fn is None:
        return _todo("define mean_embedding(table, items, answers) and pass it to the check")
    n_items, width = 7, 3
    enc = AnswerSetEncoder(n_items, width)
    table = enc.embed.weight.detach().clone()
    for items, answers in (([0, 3, 3, 6], [1, 0, 1, 1]), ([5], [0]), ([], [])):
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
    the service applies it), as `course_lib.adaptive.cat.select_items`.
    """
    from course_lib.adaptive.cat import select_items

    if fn is None:
        return _todo("define next_item(prob, item_a, answered) and pass it to the check")
    g = torch.Generator().manual_seed(3)
    prob = torch.rand(12, generator=g) * 0.9 + 0.05
    item_a = torch.randn(12, 2, generator=g)
    info = prob * (1 - prob) * item_a.pow(2).sum(1)
    best = int(info.argmax())
    for answered in ([], [best], [best, int(info.argsort()[-2])]):
        out = _call(fn, f"answered={answered}", prob.clone(), item_a.clone(), list(answered))
        if out is None:
            return _todo("your function returns None; return the index of the next item")
        out = as_index(out, "the next item")
        available = torch.ones(1, 12, dtype=torch.bool)
        available[0, answered] = False
        want = int(select_items("max_information", available, info[None])[0])
        if out in answered:
            fail(f"item {out} was already answered; never ask an item twice")
        if out != want:
            by_p = int(torch.where(available[0], -(prob - 0.5).abs(), -torch.inf).argmax())
            hint = (" you picked the item with p closest to ½: that ignores the loadings aⱼ"
                    if out == by_p else " information is p(1 − p) times the squared norm of the item's row of a")
            fail(f"with answered={answered} the next item is {want}, got {out};{hint}")
    return passed("max information over the unanswered items: the rule the service's /next-item applies")
