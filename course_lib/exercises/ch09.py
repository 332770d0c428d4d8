"""Checks for chapter 09 (Responsible personalization), sections 1-2.

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None`` (or the function returns None), and
raises ``ExerciseError`` with a hint for a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from course_lib.exercises import as_tensor, call as _call, fail, passed, todo as _todo

__all__ = ["check_clip_per_learner", "check_weighted_average", "check_per_fedavg_gradient"]


# ------------------------------------------------------------------------------------ exercise 1

def check_clip_per_learner(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(grads [learners, params], C) -> clipped [learners, params]``.

    Right: each learner's row scaled by min(1, C / ‖row‖₂), as
    `course_lib.algorithms.private.clip_per_task`, to 1e-6; rows already inside the ball unchanged.
    """
    from course_lib.algorithms.private import clip_per_task

    if fn is None:
        return _todo("define clip_per_learner(grads, C) and pass it to the check")
    g = torch.Generator().manual_seed(9)
    grads = torch.randn(6, 5, generator=g, dtype=torch.float64) * torch.tensor([0.01, 0.1, 0.5, 1, 3, 10],
                                                                                dtype=torch.float64)[:, None]
    clip = 0.7
    out = _call(fn, "gradients of 6 learners", grads.clone(), clip)
    if out is None:
        return _todo("your function returns None; return the clipped gradients")
    got = as_tensor(out, "the clipped gradients")
    if got.shape != grads.shape:
        fail(f"return one clipped row per learner, shape {tuple(grads.shape)}; got {tuple(got.shape)}")
    want = clip_per_task({"g": grads}, clip)[0]["g"]
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

    Right: Σ_c nᶜ θ_c / Σ_c nᶜ, as `course_lib.federated.core.aggregate`, to 1e-6.
    """
    from course_lib.federated.core import aggregate

    if fn is None:
        return _todo("define server_average(thetas, sizes) and pass it to the check")
    thetas = torch.tensor([[0.0, 1.0, 2.0], [4.0, 4.0, 4.0], [1.0, -1.0, 0.5]], dtype=torch.float64)
    sizes = torch.tensor([10.0, 300.0, 90.0], dtype=torch.float64)
    out = _call(fn, "three clients' parameters", thetas.clone(), sizes.clone())
    if out is None:
        return _todo("your function returns None; return the averaged parameters")
    got = as_tensor(out, "the averaged parameters")
    want = aggregate([({"w": t}, float(n)) for t, n in zip(thetas, sizes)])["w"]
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
    g = torch.Generator().manual_seed(4)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    A = m @ m.T + 0.5 * torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    theta = torch.randn(4, generator=g, dtype=torch.float64)
    alpha = 0.1

    def f(t):
        return 0.5 * t @ A @ t - b @ t

    want = torch.func.grad(lambda t: f(t - alpha * torch.func.grad(f)(t)))(theta)
    out = _call(fn, "a 4-parameter quadratic", theta.clone(), A.clone(), b.clone(), alpha)
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
