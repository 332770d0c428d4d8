"""Checks for chapter 09 (Responsible personalization), sections 1-2.

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer. Every check draws fresh random inputs at each
call and rejects an answer that calls the implementation the exercise asks for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.exercises import as_tensor, call as _call, fail, fresh_generator, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

#: Automatic differentiation: exercise 3 asks for the gradient from the formula, "no autograd".
_AUTOGRAD = {"torch.func.grad": torch.func.grad, "torch.func.vjp": torch.func.vjp, "torch.func.jacrev": torch.func.jacrev,
             "torch.func.jacfwd": torch.func.jacfwd, "torch.autograd.grad": torch.autograd.grad,
             "torch.autograd.backward": torch.autograd.backward,
             "torch.autograd.functional.jacobian": torch.autograd.functional.jacobian,
             "torch.autograd.functional.vjp": torch.autograd.functional.vjp}

__all__ = ["check_clip_per_learner", "check_weighted_average", "check_per_fedavg_gradient"]


# ------------------------------------------------------------------------------------ exercise 1

def check_clip_per_learner(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(grads [learners, params], C) -> clipped [learners, params]``.

    Right: each learner's row scaled by min(1, C / ‖row‖₂), as
    `course_lib.algorithms.private.clip_per_task` does (which the answer may not call), to 1e-6; rows
    already inside the ball unchanged.
    """
    from course_lib.algorithms import private

    if fn is None:
        return _todo("define clip_per_learner(grads, C) and pass it to the check")
    forbid_calls(fn, {"course_lib.algorithms.private.clip_per_task": private.clip_per_task,
                      "course_lib.algorithms.private.privatize": private.privatize},
                 "the per-learner clipping")
    g = fresh_generator()
    n_params = int(torch.randint(3, 9, (1,), generator=g))
    scales = torch.tensor([0.01, 0.1, 0.5, 1, 3, 10], dtype=torch.float64)[torch.randperm(6, generator=g)]
    grads = torch.randn(6, n_params, generator=g, dtype=torch.float64) * scales[:, None]
    clip = float(torch.empty(1, dtype=torch.float64).uniform_(0.3, 1.5, generator=g))
    out = _call(fn, f"gradients of 6 learners, C = {clip:.3f}", grads.clone(), clip)
    if out is None:
        return _todo("your function returns None; return the clipped gradients")
    got = as_tensor(out, "the clipped gradients")
    if got.shape != grads.shape:
        fail(f"return one clipped row per learner, shape {tuple(grads.shape)}; got {tuple(got.shape)}")
    want = grads * (clip / grads.norm(dim=1, keepdim=True)).clamp(max=1.0)
    if torch.allclose(got, want, atol=1e-6):
        return passed("each learner's influence on an update is now at most C, whatever their answers")
    norms = got.norm(dim=1)
    if torch.allclose(got, grads * (clip / grads.norm())):
        fail("you scaled the whole batch by one norm: clip each learner's row by its own norm ‖gᵢ‖")
    if torch.allclose(norms, torch.full_like(norms, clip), atol=1e-6):
        fail("every row now has norm exactly C: rows whose norm is already below C must stay as they are "
             "(scale by min(1, C / ‖gᵢ‖))")
    if (norms > clip * (1 + 1e-6)).any():
        fail(f"some rows still have norm above C = {clip}: {norms.max():.3f}; divide by the row's L2 norm")
    fail("the clipped rows do not match min(1, C / ‖gᵢ‖₂) · gᵢ; check the norm (L2 over the whole row)")


# ------------------------------------------------------------------------------------ exercise 2

def check_weighted_average(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(thetas [clients, params], sizes [clients]) -> θ [params]``: FedAvg's server step.

    Right: Σ_c nᶜ θ_c / Σ_c nᶜ, as `course_lib.federated.core.aggregate` (which the answer may not call), to 1e-6.
    """
    from course_lib.federated import core

    if fn is None:
        return _todo("define server_average(thetas, sizes) and pass it to the check")
    forbid_calls(fn, {"course_lib.federated.core.aggregate": core.aggregate,
                      "course_lib.federated.core.run_federated": core.run_federated}, "the server's weighted mean")
    g = fresh_generator()
    n_clients, n_params = (int(v) for v in torch.randint(3, 7, (2,), generator=g))
    thetas = torch.randn(n_clients, n_params, generator=g, dtype=torch.float64)
    sizes = torch.randint(5, 400, (n_clients,), generator=g).to(torch.float64)
    sizes[0] = sizes[1:].sum()          # one large client, so that the plain mean is clearly wrong
    out = _call(fn, f"{n_clients} clients' parameters", thetas.clone(), sizes.clone())
    if out is None:
        return _todo("your function returns None; return the averaged parameters")
    got = as_tensor(out, "the averaged parameters")
    want = (sizes[:, None] * thetas).sum(0) / sizes.sum()
    if got.shape != want.shape:
        fail(f"return one vector of {want.numel()} parameters; got shape {tuple(got.shape)}")
    if torch.allclose(got, want, atol=1e-6):
        return passed("the server's weighted mean: a client with more learners counts for more")
    if torch.allclose(got, thetas.mean(0), atol=1e-6):
        fail("that is the plain mean over clients: weight each client by its number of learners nᶜ")
    if torch.allclose(got, (sizes[:, None] * thetas).sum(0), atol=1e-6):
        fail("you summed nᶜ θ_c but did not divide by Σ nᶜ")
    fail(f"expected {want.tolist()}, got {got.tolist()}")


# ------------------------------------------------------------------------------------ exercise 3

def check_per_fedavg_gradient(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(theta [d], A [d, d], b [d], alpha) -> ∇F(θ)`` for f(θ) = ½θᵀAθ − bᵀθ.

    F(θ) = f(θ − α∇f(θ)) is Per-FedAvg's local objective; right: (I − αA)∇f(θ − α∇f(θ)) (exact
    Hessian term), checked against autodiff of F to 1e-8. Dropping (I − αA) is the first-order variant.
    """
    if fn is None:
        return _todo("define per_fedavg_gradient(theta, A, b, alpha) and pass it to the check")
    forbid_calls(fn, _AUTOGRAD, "∇F(θ) from the formula of section 1.1")
    g = fresh_generator()
    d = int(torch.randint(3, 7, (1,), generator=g))
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    A = m @ m.T + 0.5 * torch.eye(d, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    theta = torch.randn(d, generator=g, dtype=torch.float64)
    alpha = float(torch.empty(1, dtype=torch.float64).uniform_(0.05, 0.2, generator=g))

    def f(t):
        return 0.5 * t @ A @ t - b @ t

    want = torch.func.grad(lambda t: f(t - alpha * torch.func.grad(f)(t)))(theta)
    out = _call(fn, f"a {d}-parameter quadratic, alpha = {alpha:.3f}", theta.clone(), A.clone(), b.clone(), alpha)
    if out is None:
        return _todo("your function returns None; return the gradient vector")
    got = as_tensor(out, "the gradient")
    if got.shape != want.shape:
        fail(f"return a vector of {want.numel()} numbers; got shape {tuple(got.shape)}")
    if torch.allclose(got, want, atol=1e-8):
        return passed("the exact Per-FedAvg gradient, Hessian term (I − αA) included")
    phi = theta - alpha * (A @ theta - b)
    if torch.allclose(got, A @ phi - b, atol=1e-8):
        fail("that is the first-order (FO) Per-FedAvg gradient ∇f(φ): the exact one multiplies it by "
             "(I − α∇²f(θ)) = (I − αA)")
    if torch.allclose(got, A @ theta - b, atol=1e-8):
        fail("that is ∇f(θ), FedAvg's gradient: evaluate the gradient at the adapted φ = θ − α∇f(θ)")
    fail("not yet: ∇F(θ) = (I − αA)(Aφ − b) with φ = θ − α(Aθ − b)")
