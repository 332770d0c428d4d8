"""Checks for chapter 05 (Cold-start learner modelling).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer. Every check draws fresh random inputs at each
call and compares with its own reference; exercises 2 and 3 reject an answer that calls the
implementation they ask for (`irt.eap_ability` and its relatives, `MAML`'s adaptation, autograd).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from course_lib import algorithms
from course_lib.baselines import irt
from course_lib.exercises import as_number, as_tensor, call as _call, fail, fresh_generator, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

#: What exercise 2 asks the reader to write: the posterior mean on a grid.
_EAP = {"course_lib.baselines.irt.eap_ability": irt.eap_ability,
        "course_lib.baselines.irt.eap_ability_batch": irt.eap_ability_batch,
        "course_lib.baselines.irt.eap_predict": irt.eap_predict,
        "course_lib.baselines.irt.grid_posterior": irt.grid_posterior,
        "course_lib.baselines.irt.posterior_predictive_batch": irt.posterior_predictive_batch}
#: What exercise 3 asks for: the inner step by hand, not MAML's adaptation or autograd's gradient.
_INNER = {"course_lib.algorithms.MAML": algorithms.MAML, "course_lib.algorithms.inner_adapt": algorithms.inner_adapt,
          "course_lib.algorithms.adapt_batch": algorithms.adapt_batch,
          "torch.func.grad": torch.func.grad, "torch.autograd.grad": torch.autograd.grad,
          "torch.autograd.backward": torch.autograd.backward}

__all__ = ["check_scoring", "check_eap", "check_inner_step"]


# ------------------------------------------------------------------------------------ exercise 1

def check_scoring(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(chosen [learners, items] options with NaN = no answer, keys [items]) -> scores``.

    Right: 1.0 where the chosen option equals the key, 0.0 for another option, NaN where no
    answer was given (missing is not wrong), as a float tensor of the same shape.
    """
    if fn is None:
        return _todo("define score(chosen, keys) and pass it to the check")
    g = fresh_generator()
    learners, n_items = (int(v) for v in torch.randint(3, 7, (2,), generator=g))
    keys = torch.randint(0, 5, (n_items,), generator=g).tolist()
    chosen = torch.randint(0, 5, (learners, n_items), generator=g).float()
    chosen[0] = torch.tensor(keys, dtype=torch.float32)                 # one learner with every answer right
    chosen[1, 0] = float((keys[0] + 1) % 5)                              # and at least one wrong answer
    chosen[torch.rand(learners, n_items, generator=g) < 0.25] = float("nan")
    chosen[2, -1] = float("nan")                                         # at least one missing answer
    want = (chosen == torch.tensor(keys, dtype=torch.float32)).float()
    want[torch.isnan(chosen)] = float("nan")
    out = _call(fn, f"chosen={chosen.tolist()}, keys={keys}", chosen.clone(), list(keys))
    if out is None:
        return _todo("your function returns None; return the scored tensor")
    out = as_tensor(out, "the scores", dtype=None)
    if tuple(out.shape) != tuple(want.shape):
        fail(f"return one score per learner and item, shape {tuple(want.shape)}; got {tuple(out.shape)}")
    if not out.is_floating_point():
        fail(f"return a float tensor (dtype {out.dtype} cannot hold NaN for a missing answer); use .float()")
    miss = torch.isnan(want)
    if not torch.isnan(out[miss]).all():
        got = out[miss].tolist()
        fail(f"where no option was chosen your scores are {got}; a missing answer must stay NaN. Scoring it 0 "
             "says the learner could not solve the item, which we do not know (this is what irtorch's "
             "swedish_sat_binary() does)")
    if torch.isnan(out[~miss]).any():
        fail("you put NaN where the learner did answer; only unanswered cells are missing")
    if not torch.equal(out[~miss], want[~miss]):
        fail(f"scores for answered cells should be {want[~miss].tolist()}, got {out[~miss].tolist()}: 1 when the "
             "chosen option equals that item's key (compare column j with keys[j]), else 0")
    return passed("correct = 1, wrong = 0, missing stays NaN")


# ------------------------------------------------------------------------------------ exercise 2

def _grid_posterior_mean(a: Tensor, b: Tensor, items: Tensor, answers: Tensor, prior: bool = True) -> float:
    """Private reference of exercise 2: E[θ | answers] on a fine grid (without the N(0, 1) prior if ``prior=False``)."""
    t = torch.linspace(-6, 6, 481, dtype=torch.float64)
    p = torch.sigmoid(a[items].double()[:, None] * (t - b[items].double()[:, None]))
    y = answers.double()[:, None]
    log_post = (y * p.log() + (1 - y) * (1 - p).log()).sum(0) - (t * t / 2 if prior else 0)
    return float((torch.softmax(log_post, 0) * t).sum())


def check_eap(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(a, b, items, answers) -> E[θ | answers]`` under a N(0, 1) prior, 2PL items.

    Right: within 0.01 of the posterior mean on a fine grid (what `course_lib.baselines.irt.eap_ability`
    computes, which the answer may not call), on fresh items and answer patterns.
    """
    if fn is None:
        return _todo("define eap(a, b, items, answers) and pass it to the check")
    forbid_calls(fn, _EAP, "the posterior mean on a grid")
    g = fresh_generator()
    n_items = int(torch.randint(6, 11, (1,), generator=g))
    a = 0.4 + 1.6 * torch.rand(n_items, generator=g)
    b = torch.randn(n_items, generator=g)
    few = torch.randperm(n_items, generator=g)[:3]
    cases = [(few, torch.ones(3)), (few, torch.tensor([1.0, 0.0, 1.0])), (few[:1], torch.zeros(1)),
             (torch.arange(n_items), (torch.rand(n_items, generator=g) < 0.3).float())]
    for it, ans in cases:
        items, answers = it.tolist(), ans.tolist()
        out = _call(fn, f"items={items}, answers={answers}", a.clone(), b.clone(), it.clone(), ans.clone())
        if out is None:
            return _todo("your function returns None; return the posterior mean as a float")
        got = as_number(out, "the posterior mean")
        want = _grid_posterior_mean(a, b, it, ans)
        if math.isnan(got):
            fail("your posterior mean is NaN: normalise the posterior weights (divide by their sum), and "
                 "work with log-likelihoods if products of many probabilities underflow")
        if abs(got - want) > 0.01:
            flat = _grid_posterior_mean(a, b, it, ans, prior=False)
            hint = ("it matches a flat prior: multiply the likelihood by the N(0, 1) density on the grid"
                    if abs(got - flat) < 0.02 else
                    "more correct answers must raise the ability: P(correct) = σ(a(θ − b)), not σ(a(b − θ))"
                    if abs(got + want) < 0.02 and abs(want) > 0.02 else
                    "posterior ∝ prior(θ) × Π_j p_j(θ)^y_j (1 − p_j(θ))^(1 − y_j) on a fine grid (e.g. 121 "
                    "points on [−6, 6]); the mean is Σ θ·posterior / Σ posterior")
            fail(f"for items {items} with answers {answers} the posterior mean is {want:.3f}, you got {got:.3f}; {hint}")
    return passed("your EAP ability agrees with the posterior mean on a fine grid (as irt.eap_ability) on 4 fresh "
                  "answer patterns")


# ------------------------------------------------------------------------------------ exercise 3

def check_inner_step(fn: Callable | None) -> bool:
    """Exercise 3: one MAML inner step on the ability of a 1-D `MetaIRT` model, by hand.

    ``fn(ability, a, d, items, answers, alpha) -> new ability`` (float), where the support loss is
    the *mean* binary cross-entropy of σ(a_j · ability + d_j). Right: equals
    ``MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]).adapt(items, answers)``.
    """
    if fn is None:
        return _todo("define inner_step(ability, a, d, items, answers, alpha) and pass it to the check")
    forbid_calls(fn, _INNER, "one gradient step on the ability from the formula")
    g = fresh_generator()
    n_items = int(torch.randint(5, 10, (1,), generator=g))
    a, d = 0.4 + 1.6 * torch.rand(n_items, generator=g), torch.randn(n_items, generator=g)
    theta0 = float(torch.randn(1, generator=g) * 0.5)
    draws = []
    for k in (3, 2, 1):
        it = torch.randperm(n_items, generator=g)[:k]
        ans = torch.randint(0, 2, (k,), generator=g).float()
        draws.append((it, ans, float(0.5 + 1.5 * torch.rand(1, generator=g))))
    draws[0][1][0], draws[0][1][1] = 1.0, 0.0           # a right and a wrong answer in the first support set
    for it, ans, alpha in draws:
        items, answers = it.tolist(), ans.tolist()
        p = torch.sigmoid(a[it] * theta0 + d[it])
        want = theta0 + alpha * float((a[it] * (ans - p)).mean())
        out = _call(fn, f"ability={theta0:.3f}, items={items}, answers={answers}, alpha={alpha:.3f}", theta0,
                    a.clone(), d.clone(), it.clone(), ans.clone(), alpha)
        if out is None:
            return _todo("your function returns None; return the adapted ability")
        got = as_number(out, "the adapted ability")
        if abs(got - want) < 1e-4:
            continue
        step = want - theta0
        if abs((got - theta0) + step) < 1e-6:         # the slips' hints need a closer match than a pass
            fail(f"your step has the wrong sign (got {got:.4f}, want {want:.4f}): φ = θ − α ∇L and "
                 "∇L = −mean_j a_j (y_j − p_j), so a correct answer must raise the ability")
        if abs((got - theta0) - len(items) * step) < 1e-6 and len(items) > 1:
            fail(f"you summed over the support answers (got {got:.4f}, want {want:.4f}); the loss is the mean "
                 "over the K answers, so divide by K")
        fail(f"for items {items}, answers {answers}, α = {alpha:.3f} the adapted ability is {want:.4f}, you got "
             f"{got:.4f}; p_j = σ(a_j·θ + d_j), φ = θ + α · mean_j a_j (y_j − p_j)")
    return passed("your hand-written inner step is what course_lib's MAML.adapt computes: an ability update")
