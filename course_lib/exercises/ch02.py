"""Checks for chapter 02 (Distance metrics and prototypes).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None``, and raises ``ExerciseError`` with a
hint for a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from course_lib.distances import cosine, squared_euclidean
from course_lib.exercises import as_tensor, call as _call, fail, passed, todo as _todo

__all__ = ["check_squared_euclidean", "check_linear_classifier", "check_cosine_center", "check_knn_recommend"]


def _resources(value, what: str) -> Tensor:
    """The reader's recommendations as a 1-D LongTensor; fractions or non-numbers are a clear failure."""
    got = as_tensor(value, what).reshape(-1)
    if not torch.equal(got, got.round()):
        fail(f"{what} must be resource ids (whole numbers), got {got.tolist()}")
    return got.long()


def check_squared_euclidean(fn: Callable[[Tensor, Tensor], Tensor] | None) -> bool:
    """Exercise 1: ``fn(a [..., n, d], b [..., m, d]) -> [..., n, m]`` squared Euclidean distances."""
    if fn is None:
        return _todo("define my_squared_euclidean(a, b) and pass it to the check")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    expected = squared_euclidean(a, b)
    flat = _call(fn, "a [5, 4] and a [2, 4] tensor", a[0], b[0])
    if flat is None:
        return _todo("your function returns None; compute the [n, m] matrix of squared distances")
    flat = as_tensor(flat, "the result")
    if tuple(flat.shape) != (5, 2):
        fail(f"for a [5, 4] and b [2, 4] the result must be [5, 2] (one distance per pair), got {tuple(flat.shape)}; "
             "use broadcasting a[:, None, :] - b[None, :, :] or the ‖a‖² − 2a·b + ‖b‖² expansion")
    if torch.allclose(flat, expected[0].sqrt(), atol=1e-6):
        fail("these are Euclidean distances; the exercise asks for their squares (no square root)")
    if torch.allclose(flat, expected[0] / a.shape[-1], atol=1e-6):
        fail("you averaged over features; sum the squared differences instead")
    if not torch.allclose(flat, expected[0], atol=1e-6):
        fail("the values differ from ‖aᵢ − bⱼ‖²; check that entry [i, j] compares row i of a with row j of b")
    try:
        batched = fn(a, b)
    except Exception as exc:  # noqa: BLE001 - the reader's crash, reported as a hint
        fail(f"it works for 2-D inputs but raised {type(exc).__name__} on batches [3, 5, 4] and [3, 2, 4]; "
             "index from the end (a[..., :, None, :]) and use b.transpose(-1, -2)")
    batched = as_tensor(batched, "the batched result")
    if tuple(batched.shape) != (3, 5, 2) or not torch.allclose(batched, expected, atol=1e-6):
        fail(f"for batches [3, 5, 4] and [3, 2, 4] expected [3, 5, 2] per-task distances, got {tuple(batched.shape)}; "
             "index from the end (a[..., :, None, :]) so leading task dimensions pass through")
    return passed("your squared Euclidean distance matches course_lib.distances.squared_euclidean, batches included")


def check_cosine_center(mu: Tensor | None, x: Tensor) -> bool:
    """Exercise 2: a point ``mu [d]`` minimising Σᵢ (1 − cos(xᵢ, mu)) for the points ``x [n, d]``."""
    if mu is None:
        return _todo("compute the point that minimises the summed cosine distance")
    x = as_tensor(x, "x")
    mu = as_tensor(mu, "mu").reshape(-1)
    if mu.shape[0] != x.shape[-1]:
        fail(f"mu must be one point with {x.shape[-1]} coordinates, got {mu.shape[0]}")
    if mu.norm() == 0:
        fail("mu is the zero vector, which has no direction; cosine distance is undefined there")
    best = (x / x.norm(dim=-1, keepdim=True)).sum(0)
    total = cosine(x, mu[None]).sum()
    optimum = cosine(x, best[None]).sum()
    if torch.allclose(total, optimum, atol=1e-7, rtol=1e-7):
        mean = x.mean(0)
        gap = float(cosine(x, mean[None]).sum() - optimum)
        return passed(f"summed cosine distance {float(total):.6f} is the minimum (the plain mean gives "
                      f"{float(total) + gap:.6f}); only the direction of mu matters")
    if torch.allclose(mu / mu.norm(), x.mean(0) / x.mean(0).norm(), atol=1e-9):
        fail("that is the direction of the plain mean, the minimiser for squared Euclidean distance; cosine "
             "ignores lengths, so normalise each xᵢ to unit length before averaging")
    fail(f"your mu gives a summed cosine distance of {float(total):.6f}, but {float(optimum):.6f} is reachable; "
         "the minimiser points along Σᵢ xᵢ/‖xᵢ‖")


def check_linear_classifier(W: Tensor | None, b: Tensor | None, prototypes: Tensor) -> bool:
    """Exercise 3: the weights ``W [n_way, d]`` and biases ``b [n_way]`` of the nearest-prototype classifier."""
    if W is None or b is None:
        return _todo("fill in W and b from the prototypes")
    mu = as_tensor(prototypes, "prototypes")
    W, b = as_tensor(W, "W"), as_tensor(b, "b")
    n_way, d = mu.shape[-2:]
    if tuple(W.shape) != tuple(mu.shape):
        fail(f"W must have one row per class, shape {tuple(mu.shape)}, got {tuple(W.shape)}")
    if tuple(b.shape) != tuple(mu.shape[:-1]):
        fail(f"b must have one entry per class, shape {tuple(mu.shape[:-1])}, got {tuple(b.shape)}")
    sq = mu.pow(2).sum(-1)
    if torch.allclose(W, mu) and not torch.allclose(mu, torch.zeros_like(mu)):
        fail("W = μ is missing a factor: expanding −‖z − μ‖² gives the cross term +2 μ·z")
    if not torch.allclose(W, 2 * mu, atol=1e-6):
        fail("expand −‖z − μ_c‖² = −‖z‖² + 2 μ_c·z − ‖μ_c‖² and read off the coefficient of z")
    if torch.allclose(b, sq, atol=1e-6) and sq.abs().max() > 0:
        fail("the sign of b is flipped: the logit is −distance, so the ‖μ_c‖² term enters with a minus")
    if torch.allclose(b, -sq.sqrt(), atol=1e-6):
        fail("b uses ‖μ_c‖; the expansion of the *squared* distance gives −‖μ_c‖²")
    if torch.allclose(b, -sq / 2, atol=1e-6):
        fail("with W = 2μ the bias is −‖μ_c‖² (no factor 1/2); W = μ, b = −‖μ‖²/2 is the same classifier "
             "scaled by 1/2, but the exercise asks for the exact logits up to the −‖z‖² term")
    if not torch.allclose(b, -sq, atol=1e-6):
        fail("b is not −‖μ_c‖²; it is the part of −‖z − μ_c‖² that depends on the class but not on z")
    return passed(f"W = 2μ and b = −‖μ‖² for all {n_way} classes: squared-Euclidean ProtoNet is a linear classifier")


def check_knn_recommend(fn: Callable[[Tensor, Tensor, int], Tensor] | None) -> bool:
    """Exercise 4: ``fn(dist [new, past], worked [past] long, n_neighbors) -> [new]``: majority vote of
    the n_neighbors nearest past learners (chapter 02, section 8)."""
    if fn is None:
        return _todo("define recommend(dist, worked, n_neighbors)")
    dist = torch.tensor([[0.1, 0.2, 0.3, 5.0, 6.0, 7.0],
                         [9.0, 8.0, 0.5, 0.1, 0.2, 0.3],
                         [0.3, 0.2, 0.1, 0.4, 0.5, 0.6]])
    worked = torch.tensor([0, 0, 1, 2, 2, 1])
    got = _call(fn, "dist [3, 6], worked [6], n_neighbors=3", dist, worked, 3)
    if got is None:
        return _todo("your function returns None; return one recommended resource per new learner")
    got = _resources(got, "recommend's result")
    expected = torch.tensor([0, 2, 0])
    if got.shape != expected.shape:
        fail(f"return one resource per new learner: expected shape (3,), got {tuple(got.shape)}")
    farthest = torch.tensor([2, 0, 2])  # what a vote over the n_neighbors *largest* distances gives
    if torch.equal(got, farthest):
        fail("you voted among the n_neighbors farthest learners; sort distances ascending (topk(..., largest=False))")
    if not torch.equal(got, expected):
        fail(f"expected {expected.tolist()} for the check's small example, got {got.tolist()}; take the "
             "n_neighbors smallest distances in each row and return the most frequent 'worked' value among them")
    got1 = _resources(_call(fn, "dist [3, 6], worked [6], n_neighbors=1", dist, worked, 1), "recommend's result")
    if not torch.equal(got1, torch.tensor([0, 2, 1])):
        fail(f"with n_neighbors=1 the answer is the nearest learner's resource, [0, 2, 1]; got {got1.tolist()}")
    return passed("recommend() votes among the n_neighbors nearest past learners")
