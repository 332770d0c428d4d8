"""Checks for chapter 00 (Welcome and setup): the 2PL item response, its inverse, seeded shuffles.

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the placeholder ``None``, and raises ``ExerciseError`` with a hint for a
wrong answer. Every check draws fresh random inputs at each call and compares with a private
reference; answers that call the notebook's own ``p_correct`` are refused.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch

from course_lib.exercises import as_array, as_number, call as _call, fail, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

__all__ = ["check_p_correct", "check_ability_for", "check_learner_order"]

_NOTEBOOK = {"p_correct": "chapter 00's 2PL function from section 2"}


def _rng() -> np.random.Generator:
    """A generator seeded afresh at every call: the check runs on inputs nobody has seen before."""
    return np.random.default_rng(random.SystemRandom().randrange(2**63))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------------------------ exercise 1
def check_p_correct(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(ability [n, 1], a [items], b [items]) -> [n, items]``, P(correct) = σ(a(θ − b))."""
    if fn is None:
        return _todo("define my_p_correct(ability, a, b) and pass it to the check")
    forbid_calls(fn, {}, "σ(a(θ − b)) with NumPy", forbidden_names=_NOTEBOOK)
    rng = _rng()
    ability = rng.normal(0, 1.5, size=(7, 1))
    a, b = rng.uniform(0.3, 3.0, size=5), rng.normal(0, 1.2, size=5)
    got = _call(fn, "abilities [7, 1] and 5 items", ability, a, b)
    if got is None:
        return _todo("your function returns None; return the array of probabilities")
    got = as_array(got, "my_p_correct's result")
    want = _sigmoid(a * (ability - b))
    if got.shape != want.shape:
        fail(f"abilities [7, 1] against 5 items should broadcast to [7, 5], got {got.shape}; "
             "write a * (ability - b) and let NumPy broadcast")
    if np.allclose(got, _sigmoid(ability - b)):
        fail("the discrimination a is missing: P(correct) = σ(a(θ − b)); a sets how steeply the curve rises")
    if np.allclose(got, _sigmoid(a * (b - ability))):
        fail("the sign is flipped: a stronger learner (larger θ) must have a higher chance, σ(a(θ − b))")
    if np.allclose(got, _sigmoid(a * ability - b)):
        fail("that is σ(aθ − b); the difficulty sits inside the bracket: σ(a(θ − b)), so P = 0.5 at θ = b")
    if not np.allclose(got, want, atol=1e-10):
        fail("the probabilities differ from σ(a(θ − b)) = 1 / (1 + exp(−a(θ − b))); check the formula")
    return passed("σ(a(θ − b)) on fresh random learners and items, broadcast to [learners, items]")


# ------------------------------------------------------------------------------------ exercise 2
def check_ability_for(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(p, a, b) -> θ`` with σ(a(θ − b)) = p, and a ValueError for p outside (0, 1)."""
    if fn is None:
        return _todo("define my_ability_for(p, a, b) and pass it to the check")
    forbid_calls(fn, {}, "the inverse of the 2PL curve", forbidden_names=_NOTEBOOK)
    rng = _rng()
    for _ in range(5):
        p, a, b = float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.3, 3.0)), float(rng.normal(0, 1.2))
        got = _call(fn, f"p = {p:.3f}, a = {a:.3f}, b = {b:.3f}", p, a, b)
        if got is None:
            return _todo("your function returns None; return the ability θ")
        got = as_number(got, "the ability θ")
        logit = np.log(p / (1 - p))
        want = b + logit / a
        if np.isclose(got, b + logit * a):
            fail("you multiplied the log-odds by a; solving a(θ − b) = log(p / (1 − p)) divides by a")
        if np.isclose(got, logit / a - b):
            fail("θ − b = log-odds / a, so θ = b + log-odds / a (plus b, not minus)")
        if np.isclose(got, b + logit):
            fail("the discrimination a is missing: θ = b + log(p / (1 − p)) / a")
        if not np.isclose(got, want, atol=1e-9):
            fail(f"for p = {p:.3f}, a = {a:.3f}, b = {b:.3f} expected θ = {want:.4f}, got {got:.4f}; "
                 "invert p = σ(a(θ − b)): a(θ − b) = log(p / (1 − p))")
    for bad in (0.0, 1.0, 1.5):
        try:
            value = fn(bad, 1.0, 0.0)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - the reader's crash, reported as a hint
            fail(f"for p = {bad} raise a ValueError that says p must lie in (0, 1); got {type(exc).__name__}: {exc}")
        fail(f"for p = {bad} you returned {value!r}; no finite ability has that chance. Raise a ValueError "
             "that says p must lie strictly between 0 and 1 (a clear error beats a silent inf or nan)")
    return passed("θ = b + log(p / (1 − p)) / a on random items, and a clear ValueError for impossible p")


# ------------------------------------------------------------------------------------ exercise 3
def _order(value) -> list[int]:
    """The reader's order as a list of ints; a non-integer or non-numeric answer is a clear failure."""
    values = as_array(value, "the order").reshape(-1)
    if not np.all(values == np.round(values)):
        fail("the order must hold learner indices (whole numbers 0..n−1), not fractions")
    return [int(v) for v in values]


def check_learner_order(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(n, seed) -> order`` a random order of 0..n−1, reproducible from ``seed``,
    drawn from its own generator (the global random state must not change)."""
    if fn is None:
        return _todo("define my_learner_order(n, seed) and pass it to the check")
    rng = _rng()
    n, seed = int(rng.integers(20, 60)), int(rng.integers(0, 10_000))
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first = _call(fn, f"n = {n}, seed = {seed}", n, seed)
    if first is None:
        return _todo("your function returns None; return the order as a tensor, array or list")
    changed = [name for name, same in (
        ("torch", torch.equal(torch_state, torch.get_rng_state())),
        ("NumPy", all(np.array_equal(x, y) for x, y in zip(numpy_state[1:2], np.random.get_state()[1:2]))),
        ("Python's random", python_state == random.getstate())) if not same]
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    if changed:
        fail(f"calling your function changed {changed[0]}'s global random state, so every later draw in the "
             "notebook changes too. Draw from a generator of your own: torch.Generator().manual_seed(seed) "
             "(or np.random.default_rng(seed))")
    order = _order(first)
    if sorted(order) != list(range(n)):
        fail(f"return every learner 0..{n - 1} exactly once (a permutation); got {len(order)} values, "
             f"{len(set(order))} distinct")
    again = _order(_call(fn, f"n = {n}, seed = {seed} again", n, seed))
    if again != order:
        fail("the same seed gave two different orders: seed the generator with `seed` inside the function")
    if order == list(range(n)):
        fail("that is the identity order, not a random one")
    others = [_order(_call(fn, f"n = {n}, seed = {seed + d}", n, seed + d)) for d in (1, 2)]
    if all(o == order for o in others):
        fail("different seeds give the same order: the seed must drive the generator")
    return passed(f"a seeded permutation of {n} learners: reproducible, seed-dependent, no global side effects")
