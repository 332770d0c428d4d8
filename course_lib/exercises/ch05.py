"""Checks for chapter 05 (Cold-start learner modelling).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from course_lib.exercises import as_number, as_tensor, call as _call, fail, passed, todo as _todo

__all__ = ["check_scoring", "check_eap", "check_inner_step"]


# ------------------------------------------------------------------------------------ exercise 1

def check_scoring(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(chosen [learners, items] options with NaN = no answer, keys [items]) -> scores``.

    Right: 1.0 where the chosen option equals the key, 0.0 for another option, NaN where no
    answer was given (missing is not wrong), as a float tensor of the same shape.
    """
    if fn is None:
        return _todo("define score(chosen, keys) and pass it to the check")
    nan = float("nan")
    chosen = torch.tensor([[0.0, 2.0, nan, 1.0], [3.0, nan, 4.0, 1.0], [0.0, 1.0, 2.0, nan]])
    keys = [0, 1, 4, 1]
    want = torch.tensor([[1.0, 0.0, nan, 1.0], [0.0, nan, 1.0, 1.0], [1.0, 1.0, 0.0, nan]])
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

_A = torch.tensor([1.2, 0.7, 2.0, 1.0, 0.4, 1.5])
_B = torch.tensor([-0.5, 0.3, 1.1, 0.0, -1.5, 0.8])
_CASES = [([0, 1, 2], [1.0, 0.0, 1.0]), ([2, 3, 5], [1.0, 1.0, 1.0]), ([4], [0.0]),
          ([0, 1, 2, 3, 4, 5], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0])]


def check_eap(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(a, b, items, answers) -> E[θ | answers]`` under a N(0, 1) prior, 2PL items.

    Right: within 0.01 of `course_lib.baselines.irt.eap_ability` on several answer patterns.
    """
    from course_lib.baselines.irt import eap_ability

    if fn is None:
        return _todo("define eap(a, b, items, answers) and pass it to the check")
    for items, answers in _CASES:
        it, ans = torch.tensor(items), torch.tensor(answers)
        out = _call(fn, f"items={items}, answers={answers}", _A.clone(), _B.clone(), it, ans)
        if out is None:
            return _todo("your function returns None; return the posterior mean as a float")
        got = as_number(out, "the posterior mean")
        want, _ = eap_ability(_A, _B, it, ans)
        if math.isnan(got):
            fail("your posterior mean is NaN: normalise the posterior weights (divide by their sum), and "
                 "work with log-likelihoods if products of many probabilities underflow")
        if abs(got - want) > 0.01:
            flat = _flat_prior_mean(it, ans)
            hint = ("it matches a flat prior: multiply the likelihood by the N(0, 1) density on the grid"
                    if abs(got - flat) < 0.02 else
                    "more correct answers must raise the ability: P(correct) = σ(a(θ − b)), not σ(a(b − θ))"
                    if (got - 0) * (want - 0) < 0 else
                    "posterior ∝ prior(θ) × Π_j p_j(θ)^y_j (1 − p_j(θ))^(1 − y_j) on a fine grid (e.g. 121 "
                    "points on [−6, 6]); the mean is Σ θ·posterior / Σ posterior")
            fail(f"for items {items} with answers {answers} the posterior mean is {want:.3f}, you got {got:.3f}; {hint}")
    return passed("your EAP ability agrees with course_lib.baselines.irt.eap_ability on 4 answer patterns")


def _flat_prior_mean(items: Tensor, answers: Tensor) -> float:
    t = torch.linspace(-6, 6, 241, dtype=torch.float64)
    p = torch.sigmoid(_A[items].double()[:, None] * (t - _B[items].double()[:, None]))
    ll = (answers.double()[:, None] * p.log() + (1 - answers.double()[:, None]) * (1 - p).log()).sum(0)
    w = torch.softmax(ll, 0)
    return float((w * t).sum())


# ------------------------------------------------------------------------------------ exercise 3

def check_inner_step(fn: Callable | None) -> bool:
    """Exercise 3: one MAML inner step on the ability of a 1-D `MetaIRT` model, by hand.

    ``fn(ability, a, d, items, answers, alpha) -> new ability`` (float), where the support loss is
    the *mean* binary cross-entropy of σ(a_j · ability + d_j). Right: equals
    ``MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]).adapt(items, answers)``.
    """
    from course_lib.algorithms import MAML
    from course_lib.models.meta_irt import MetaIRT

    if fn is None:
        return _todo("define inner_step(ability, a, d, items, answers, alpha) and pass it to the check")
    model = MetaIRT(6, dims=1, init_d=torch.tensor([0.5, -0.3, 1.0, 0.0, -1.2, 0.4]), seed=3)
    with torch.no_grad():
        model.ability.fill_(0.3)
    a, d = model.item_a.detach()[:, 0].clone(), model.item_d.detach().clone()
    for items, answers, alpha in (([0, 2, 5], [1.0, 0.0, 1.0], 0.8), ([1, 3], [0.0, 0.0], 2.0), ([4], [1.0], 0.5)):
        it, ans = torch.tensor(items), torch.tensor(answers)
        want = float(MAML(model, loss="bce", alpha=alpha, steps=1, adapt=["ability"]).adapt(it, ans)["ability"])
        out = _call(fn, f"ability=0.3, items={items}, answers={answers}, alpha={alpha}", 0.3, a.clone(), d.clone(),
                    it, ans, alpha)
        if out is None:
            return _todo("your function returns None; return the adapted ability")
        got = as_number(out, "the adapted ability")
        if abs(got - want) < 1e-4:
            continue
        step = want - 0.3
        if abs((got - 0.3) + step) < 1e-4:
            fail(f"your step has the wrong sign (got {got:.4f}, want {want:.4f}): φ = θ − α ∇L and "
                 "∇L = −mean_j a_j (y_j − p_j), so a correct answer must raise the ability")
        if abs((got - 0.3) - len(items) * step) < 1e-4:
            fail(f"you summed over the support answers (got {got:.4f}, want {want:.4f}); the loss is the mean "
                 "over the K answers, so divide by K")
        fail(f"for items {items}, answers {answers}, α = {alpha} the adapted ability is {want:.4f}, you got "
             f"{got:.4f}; p_j = σ(a_j·θ + d_j), φ = θ + α · mean_j a_j (y_j − p_j)")
    return passed("your hand-written inner step equals course_lib's MAML.adapt: it is an ability update")
