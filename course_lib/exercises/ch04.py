"""Checks for chapter 04 (Reptile and first-order meta-learning).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None``, and raises ``ExerciseError`` with a
hint for a wrong answer. The code says ``steps`` for the number of inner steps; the messages keep
the paper's symbol k for it (Nichol et al. 2018), as the chapter's formulas do.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad

from course_lib import algorithms
from course_lib.algorithms import reptile_direction, taylor
from course_lib.algorithms.functional import get_loss, task_loss
from course_lib.algorithms.taylor import ALGORITHMS
from course_lib.exercises import as_array, as_number, as_tensor, call as _call, fail, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

#: What exercises 2-4 ask the reader to derive or write, so an answer may not call it.
_LIBRARY = {"course_lib.algorithms.taylor": taylor, "course_lib.algorithms.taylor.coefficients": taylor.coefficients,
            "course_lib.algorithms.reptile_direction": reptile_direction,
            "course_lib.algorithms.Reptile": algorithms.Reptile,
            "course_lib.algorithms.inner_adapt": algorithms.inner_adapt}


def coefficients(algorithm: str, steps: int) -> tuple[int, int]:
    """Private reference for exercise 2, from the term count of chapter 04, section 2."""
    k = steps
    return {"maml": (1, 2 * (k - 1)), "fomaml": (1, k - 1), "reptile": (k, k * (k - 1) // 2)}[algorithm]


def _fresh_ks(n: int, low: int = 2, high: int = 40) -> list[int]:
    """``n`` step counts drawn afresh at every call (so a table typed in from the notebook fails)."""
    return random.SystemRandom().sample(range(low, high + 1), n)
from course_lib.tasks import TaskBatch

__all__ = ["check_reptile_step", "check_coefficients", "check_largest_avg_grad", "check_reptile_k1",
           "quadratic_reptile_step"]


# ------------------------------------------------------------------ exercise 1: one Reptile step

def quadratic_reptile_step(theta: np.ndarray, tasks: Sequence[tuple], alpha: float, steps: int,
                           beta: float) -> np.ndarray:
    """The reference answer of exercise 1: one batched Reptile step on quadratic tasks.

    Task τ has loss ½ (θ − c_τ)ᵀ A_τ (θ − c_τ) (gradient A_τ(θ − c_τ)); ``tasks`` is a list of
    ``(A [d, d], c [d])``, θ is ``[d]``. Each task runs ``steps`` SGD steps of size α from θ,
    then θ ← θ + β (mean_τ φ_τ − θ). Derived in chapter 04, section 1.
    """
    theta = np.asarray(theta, dtype=float)
    phis = []
    for A, c in tasks:
        A, c = np.asarray(A, dtype=float), np.asarray(c, dtype=float)
        phi = theta.copy()
        for _ in range(steps):
            phi = phi - alpha * A @ (phi - c)
        phis.append(phi)
    return theta + beta * (np.mean(phis, axis=0) - theta)


def check_reptile_step(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(theta [d], tasks [(A, c), ...], alpha, steps, beta) -> new theta [d]``."""
    if fn is None:
        return _todo("define reptile_step(theta, tasks, alpha, steps, beta) and pass it to the check")
    forbid_calls(fn, {**_LIBRARY, "course_lib.exercises.ch04.quadratic_reptile_step": quadratic_reptile_step},
                 "the Reptile step with numpy")
    rng = np.random.default_rng(random.SystemRandom().randrange(2**31))
    tasks = []
    for _ in range(3):
        m = rng.normal(size=(2, 2))
        tasks.append((m @ m.T + 0.3 * np.eye(2), rng.normal(size=2) * 2))
    theta, alpha, steps, beta = np.array([0.5, -1.0]), 0.2, 4, 0.3
    got = _call(fn, "theta [2], 3 tasks, alpha=0.2, steps=4, beta=0.3", theta.copy(), tasks, alpha, steps, beta)
    if got is None:
        return _todo("your function returns None; return the new θ after one outer step")
    got = as_array(got, "the new θ").reshape(-1)
    if got.shape != theta.shape:
        fail(f"return θ with the same shape as the input, (2,), got {got.shape}")
    expected = quadratic_reptile_step(theta, tasks, alpha, steps, beta)
    if np.allclose(got, expected, atol=1e-10):
        return passed("one Reptile step: `steps` SGD steps per task from θ, then θ ← θ + β(φ̄ − θ)")
    phis = [quadratic_reptile_step(theta, [t], alpha, steps, 1.0) for t in tasks]
    hints = [
        (quadratic_reptile_step(theta, tasks, alpha, steps, 1.0), "you returned φ̄ itself: interpolate, "
         "θ + β(φ̄ − θ), so that β controls how far θ moves"),
        (theta - beta * (np.mean(phis, axis=0) - theta), "θ moved away from the adapted parameters; "
         "the step is θ + β(φ̄ − θ): φ̄ − θ points from θ towards the tasks' solutions"),
        (quadratic_reptile_step(theta, tasks, alpha, 1, beta), "that is one inner step per task; run all the "
         "SGD steps, each one using the gradient at the current φ"),
        (theta + beta * (phis[-1] - theta), "θ moved towards the last task only; average φ over all tasks"),
        (theta + beta * (np.mean([c for _, c in tasks], axis=0) - theta), "θ moved towards the tasks' minima "
         "c_τ; Reptile moves towards where its SGD steps get, φ_τ, which is not the minimum after few steps"),
    ]
    # steps that all use the gradient at θ (no re-evaluation): φ = θ − steps·α A(θ − c).
    frozen = [theta - steps * alpha * np.asarray(A) @ (theta - np.asarray(c)) for A, c in tasks]
    hints.append((theta + beta * (np.mean(frozen, axis=0) - theta), "every inner step used the gradient at θ; "
                  "recompute the gradient A(φ − c) at the current φ inside the loop"))
    for wrong, message in hints:
        if np.allclose(got, wrong, atol=1e-10):
            fail(message)
    fail(f"expected θ = {np.round(expected, 6).tolist()}, got {np.round(got, 6).tolist()}; per task start at "
         "φ = θ, repeat `steps` times φ ← φ − α A(φ − c), then return θ + β(mean φ − θ)")


# ---------------------------------------------------------- exercise 2: the (a, b) coefficients

def check_coefficients(fn: Callable[[str, int], tuple] | None) -> bool:
    """Exercise 2: ``fn(algorithm, steps) -> (a, b)`` for "maml", "fomaml", "reptile" and steps k = 1..6."""
    if fn is None:
        return _todo("define coeffs(algorithm, steps) returning (a, b)")
    forbid_calls(fn, _LIBRARY, "the coefficients by counting terms")
    for steps in [*range(1, 7), *sorted(_fresh_ks(4, 7, 60))]:
        for algo in ALGORITHMS:
            try:
                got = fn(algo, steps)
            except Exception as exc:  # noqa: BLE001
                fail(f"coeffs({algo!r}, {steps}) raised {type(exc).__name__}: {exc}")
            if got is None:
                return _todo(f"coeffs({algo!r}, {steps}) returns None; return a pair (a, b)")
            pair = as_array(got, f"coeffs({algo!r}, {steps})").reshape(-1)
            if pair.shape != (2,):
                fail(f"coeffs({algo!r}, {steps}) must return a pair of numbers (a, b), got {got!r}")
            a, b = float(pair[0]), float(pair[1])
            ea, eb = coefficients(algo, steps)
            if (a, b) == (ea, eb):
                continue
            where = f"for {algo} with k = {steps} steps you gave (a, b) = ({a:g}, {b:g})"
            if algo == "reptile" and a != ea:
                fail(f"{where}: Reptile's g = (θ − φ)/α is the SUM of its k step gradients, so AvgGrad appears "
                     "k times (a = k)")
            if algo == "reptile" and b == steps * (steps - 1):
                fail(f"{where}: count the pairs j < i once: Σ_{{i≤k}} Σ_{{j<i}} H̄ᵢḡⱼ has k(k−1)/2 terms")
            if algo in ("maml", "fomaml") and a != ea:
                fail(f"{where}: MAML and FOMAML take one outer gradient, so AvgGrad appears once (a = 1)")
            other = "fomaml" if algo == "maml" else "maml"
            if algo != "reptile" and b == coefficients(other, steps)[1] and steps > 1:
                fail(f"{where}: that is {other.upper()}'s b. FOMAML keeps only H̄ₖ Σⱼ ḡⱼ (k−1 terms); MAML adds "
                     "the Jacobian terms Σⱼ H̄ⱼ ḡₖ, another k−1, so b = 2(k−1)")
            if algo != "reptile" and b == eb + (2 if algo == "maml" else 1):
                fail(f"{where}: in Nichol et al. 'k' counts minibatches: MAML/FOMAML with k take k−1 inner steps "
                     "and the outer gradient on minibatch k")
            fail(f"{where}; expected ({ea}, {eb}). Expand each step gradient gᵢ = ḡᵢ − α H̄ᵢ Σ_{{j<i}} ḡⱼ + O(α²) "
                 "and count the AvgGrad and AvgGradInner terms")
    return passed("all (a, b) pairs for k = 1..6 and four random larger k: MAML (1, 2(k−1)), FOMAML (1, k−1), "
                  "Reptile (k, k(k−1)/2)")


# ----------------------------------------------- exercise 3: which update leans on which term

def check_largest_avg_grad(answer: dict | Callable[[int], dict] | None, steps: int = 5) -> bool:
    """Exercise 3: ``fn(k) -> {"largest_avg_grad": name, "a": number, "largest_inner_weight": name}``.

    A function of the number of steps k is checked at k = ``steps`` and at three random k in 2..40
    (and may not call `course_lib.algorithms.taylor`); a plain dict is checked at k = ``steps``.

    ``largest_avg_grad``: the algorithm whose update has the largest AvgGrad coefficient a, and that
    a; ``largest_inner_weight``: the algorithm with the largest ratio b/a (the most weight on
    AvgGradInner relative to AvgGrad).
    """
    if answer is None:
        return _todo("fill in the three entries of the answer dictionary")
    if callable(answer):
        forbid_calls(answer, _LIBRARY, "the comparison from the coefficients you derived")
        for k in [steps, *_fresh_ks(3)]:
            try:
                value = answer(k)
            except Exception as exc:  # noqa: BLE001 - the reader's crash, reported as a hint
                fail(f"calling your function with k = {k} raised {type(exc).__name__}: {exc}")
            if value is None:
                return _todo("your function returns None; return the answer dictionary for k")
            if not _judge_largest(value, k, quiet=True):
                return False
        return _judge_largest(_call(answer, f"k = {steps}", steps), steps, quiet=True) and passed(
            "right for k = 5 and three random k: Reptile's a = k grows with k, MAML's b/a = 2(k−1) is the largest")
    return _judge_largest(answer, steps)


def _judge_largest(answer: dict, steps: int, quiet: bool = False) -> bool:
    """Judge one answer dictionary for k = ``steps`` (exercise 3); fail with a hint when it is wrong."""
    if not isinstance(answer, dict):
        fail(f"answer must be a dict with keys 'largest_avg_grad', 'a', 'largest_inner_weight'; got {type(answer).__name__}")
    missing = {"largest_avg_grad", "a", "largest_inner_weight"} - set(answer)
    if missing:
        fail(f"the answer dictionary lacks {sorted(missing)}")
    if any(v is None for v in answer.values()):
        return _todo("some entries are still None")
    name = str(answer["largest_avg_grad"]).strip().lower()
    if name not in ALGORITHMS:
        fail(f"name one of {ALGORITHMS}, got {answer['largest_avg_grad']!r}")
    a_best = coefficients("reptile", steps)
    if name != "reptile":
        fail(f"{name.upper()}'s AvgGrad coefficient is {coefficients(name, steps)[0]} for every k; one algorithm sums "
             "k step gradients, so its coefficient grows with k")
    a = as_number(answer["a"], "'a'")
    if a == a_best[1] and a != a_best[0]:
        fail(f"{a:g} is Reptile's b (the AvgGradInner coefficient) for k = {steps}; a multiplies AvgGrad")
    if a != a_best[0]:
        fail(f"Reptile's a for k = {steps} is not {a:g}: its g is the sum of k step gradients, each ≈ ḡ")
    ratio = {al: coefficients(al, steps)[1] / coefficients(al, steps)[0] for al in ALGORITHMS}
    inner = str(answer["largest_inner_weight"]).strip().lower()
    if inner not in ALGORITHMS:
        fail(f"name one of {ALGORITHMS} for 'largest_inner_weight', got {answer['largest_inner_weight']!r}")
    if inner != "maml":
        fail(f"b/a for k = {steps}: " + ", ".join(f"{al} {r:g}" for al, r in ratio.items())
             + f"; {inner.upper()} is not the largest. Compare b/a, not b alone")
    if quiet:
        return True
    return passed(f"for k = {steps} Reptile has the largest AvgGrad coefficient (a = {a_best[0]}), while MAML puts the "
                  f"most weight on AvgGradInner relative to AvgGrad (b/a = {ratio['maml']:g} vs FOMAML "
                  f"{ratio['fomaml']:g}, Reptile {ratio['reptile']:g})")


# ------------------------------------------------- exercise 4: Reptile with k = 1 is α·gradient

def _example(seed: int = 0) -> tuple[nn.Module, dict[str, Tensor], Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.rand(6, 1, generator=g, dtype=torch.float64) * 10 - 5
    y = 2.0 * torch.sin(x - 0.5)
    theta = {name: v.detach() for name, v in net.named_parameters()}
    return net, theta, x, y


def check_reptile_k1(fn: Callable | None, alpha: float = 0.05) -> bool:
    """Exercise 4: ``fn(model, theta, x [n, 1], y [n, 1], alpha) -> θ − φ`` after ONE SGD step (MSE)."""
    if fn is None:
        return _todo("define reptile_k1(model, theta, x, y, alpha) returning θ − φ as a dict")
    forbid_calls(fn, _LIBRARY, "one SGD step and θ − φ")
    net, theta, x, y = _example(random.SystemRandom().randrange(1, 2**31))
    got = _call(fn, f"a random network, 6 points, alpha={alpha}", net, {name: v.clone() for name, v in theta.items()},
                x, y, alpha)
    if got is None:
        return _todo("your function returns None; return the dictionary θ − φ")
    if not isinstance(got, dict) or set(got) != set(theta):
        fail(f"return a dict with the parameter names {sorted(theta)} (like θ), got "
             f"{sorted(got) if isinstance(got, dict) else type(got).__name__}")
    mse = get_loss("mse")
    g = grad(lambda p: task_loss(net, p, mse, x, y))(theta)
    for name, value in got.items():
        if tuple(as_tensor(value, f"entry {name!r}").shape) != tuple(theta[name].shape):
            fail(f"entry {name!r} must have the shape of the parameter, {tuple(theta[name].shape)}")
    flat = lambda d: torch.cat([as_tensor(d[name], f"entry {name!r}").reshape(-1) for name in theta])  # noqa: E731
    got_v, g_v, th_v = flat(got), flat(g), flat(theta)
    if torch.allclose(got_v, g_v, atol=1e-10):
        fail("that is the gradient ∇L(θ) itself; θ − φ with φ = θ − α∇L(θ) carries a factor α")
    if torch.allclose(got_v, -alpha * g_v, atol=1e-10):
        fail("the sign is flipped: return θ − φ (Reptile's 'gradient'), not φ − θ")
    if torch.allclose(got_v, th_v - alpha * g_v, atol=1e-10):
        fail("that is φ, the adapted parameters; return the difference θ − φ")
    if not torch.allclose(got_v, alpha * g_v, atol=1e-10):
        fail("θ − φ after one SGD step of size α on the MSE of (x, y) should equal α·∇L(θ); check the loss "
             "(mean squared error over the points) and that φ = θ − α∇L(θ)")
    batch = TaskBatch(x[None, :3], y[None, :3], x[None, 3:], y[None, 3:])
    lib = reptile_direction(net, theta, batch, loss_fn=mse, alpha=alpha, steps=1)
    assert torch.allclose(flat(lib), got_v, atol=1e-10)
    return passed(f"with k = 1, θ − φ = α·∇L(θ) (max difference {float((got_v - alpha * g_v).abs().max()):.1e}), "
                  "the same as course_lib's reptile_direction: Reptile with one step is joint training")
