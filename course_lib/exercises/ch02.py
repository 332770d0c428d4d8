"""Checks for chapter 02 (Distance metrics and prototypes).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None``, and raises ``ExerciseError`` with a
hint for a wrong answer. Every check calls the reader's function on fresh random inputs, compares
with a private reference, and rejects an answer that calls the implementation the exercise asks
for (`course_lib.distances`, `prototype_linear_classifier`, the notebook's own `knn_recommend`).
"""

from __future__ import annotations

from collections.abc import Callable

import scipy.optimize
import scipy.spatial.distance
import torch
from torch import Tensor

from course_lib import distances
from course_lib.algorithms import protonet
from course_lib.exercises import as_tensor, call as _call, fail, fresh_generator, passed, todo as _todo
from course_lib.exercises.guard import forbid_calls

__all__ = ["check_squared_euclidean", "check_linear_classifier", "check_cosine_center", "check_knn_recommend"]

#: Ready-made distances: exercise 1 asks the reader to write one.
_DISTANCES = {"course_lib.distances.squared_euclidean": distances.squared_euclidean,
              "course_lib.distances.euclidean": distances.euclidean,
              "course_lib.distances.pairwise": distances.pairwise,
              "course_lib.distances.get_distance": distances.get_distance,
              "torch.cdist": torch.cdist, "scipy.spatial.distance.cdist": scipy.spatial.distance.cdist}


def _resources(value, what: str) -> Tensor:
    """The reader's recommendations as a 1-D LongTensor; fractions or non-numbers are a clear failure."""
    got = as_tensor(value, what).reshape(-1)
    if not torch.equal(got, got.round()):
        fail(f"{what} must be resource ids (whole numbers), got {got.tolist()}")
    return got.long()


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Private reference of exercise 1: ‖aᵢ − bⱼ‖² by broadcasting, ``[..., n, m]``."""
    return (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1)


# ------------------------------------------------------------------------------------ exercise 1

def check_squared_euclidean(fn: Callable[[Tensor, Tensor], Tensor] | None) -> bool:
    """Exercise 1: ``fn(a [..., n, d], b [..., m, d]) -> [..., n, m]`` squared Euclidean distances."""
    if fn is None:
        return _todo("define my_squared_euclidean(a, b) and pass it to the check")
    forbid_calls(fn, _DISTANCES, "the squared distances with broadcasting or one matrix product")
    g = fresh_generator()
    tasks, n, m, d = 3, *(int(v) for v in torch.randint(3, 8, (3,), generator=g))
    m = n + 1 if m == n else m                       # n ≠ m, so that a transposed answer shows
    a = torch.randn(tasks, n, d, generator=g, dtype=torch.float64)
    b = torch.randn(tasks, m, d, generator=g, dtype=torch.float64)
    expected = _squared_distances(a, b)
    flat = _call(fn, f"a [{n}, {d}] and a [{m}, {d}] tensor", a[0], b[0])
    if flat is None:
        return _todo("your function returns None; compute the [n, m] matrix of squared distances")
    flat = as_tensor(flat, "the result")
    if tuple(flat.shape) != (n, m):
        fail(f"for a [{n}, {d}] and b [{m}, {d}] the result must be [{n}, {m}] (one distance per pair), got "
             f"{tuple(flat.shape)}; use broadcasting a[:, None, :] - b[None, :, :] or the ‖a‖² − 2a·b + ‖b‖² expansion")
    if torch.allclose(flat, expected[0].sqrt(), atol=1e-6):
        fail("these are Euclidean distances; the exercise asks for their squares (no square root)")
    if torch.allclose(flat, expected[0] / d, atol=1e-6):
        fail("you averaged over features; sum the squared differences instead")
    if not torch.allclose(flat, expected[0], atol=1e-6):
        fail("the values differ from ‖aᵢ − bⱼ‖²; check that entry [i, j] compares row i of a with row j of b")
    try:
        batched = fn(a, b)
    except Exception as exc:  # noqa: BLE001 - the reader's crash, reported as a hint
        fail(f"it works for 2-D inputs but raised {type(exc).__name__} on batches [{tasks}, {n}, {d}] and "
             f"[{tasks}, {m}, {d}]; index from the end (a[..., :, None, :]) and use b.transpose(-1, -2)")
    batched = as_tensor(batched, "the batched result")
    if tuple(batched.shape) != (tasks, n, m) or not torch.allclose(batched, expected, atol=1e-6):
        fail(f"for batches [{tasks}, {n}, {d}] and [{tasks}, {m}, {d}] expected [{tasks}, {n}, {m}] per-task "
             f"distances, got {tuple(batched.shape)}; index from the end (a[..., :, None, :]) so leading task "
             "dimensions pass through")
    return passed("your squared Euclidean distance is right on fresh random inputs, batches included")


# ------------------------------------------------------------------------------------ exercise 2

def _cloud(g: torch.Generator) -> Tensor:
    """Fresh points in the positive quadrant of 2-4 dimensions: short ones spread out, a few long ones."""
    d = int(torch.randint(2, 5, (1,), generator=g))
    short = torch.rand(20, d, generator=g, dtype=torch.float64) * 1.2 + 0.05
    long = (3 + torch.rand(5, 1, generator=g, dtype=torch.float64)) * (
        torch.tensor([1.0] + [0.15] * (d - 1), dtype=torch.float64) + 0.05 * torch.rand(5, d, generator=g))
    return torch.cat([short, long])[torch.randperm(25, generator=g)]


def check_cosine_center(fn: Callable[[Tensor], Tensor] | None) -> bool:
    """Exercise 2: ``fn(x [n, d]) -> mu [d]``, a point minimising Σᵢ (1 − cos(xᵢ, mu)), on fresh points."""
    if fn is None:
        return _todo("define cosine_center(x) and pass it to the check")
    forbid_calls(fn, {"scipy.optimize.minimize": scipy.optimize.minimize},
                 "the minimiser from the argument in the text (no optimiser needed)",
                 forbidden_names={"minimise_sum": "the notebook's numerical minimiser of section 4"})
    g = fresh_generator()
    for _ in range(2):
        x = _cloud(g)
        out = _call(fn, f"{len(x)} points in {x.shape[1]} dimensions", x.clone())
        if out is None:
            return _todo("your function returns None; return one point mu of shape [d]")
        mu = as_tensor(out, "mu").reshape(-1)
        if mu.shape[0] != x.shape[-1]:
            fail(f"mu must be one point with {x.shape[-1]} coordinates, got {mu.shape[0]}")
        if mu.norm() == 0:
            fail("mu is the zero vector, which has no direction; cosine distance is undefined there")
        unit = x / x.norm(dim=-1, keepdim=True)
        best = unit.sum(0)
        total = (1 - unit @ (mu / mu.norm())).sum()
        optimum = (1 - unit @ (best / best.norm())).sum()
        if torch.allclose(total, optimum, atol=1e-7, rtol=1e-7):
            continue
        mean = x.mean(0)
        if torch.allclose(mu / mu.norm(), mean / mean.norm(), atol=1e-9):
            fail("that is the direction of the plain mean, the minimiser for squared Euclidean distance; cosine "
                 "ignores lengths, so normalise each xᵢ to unit length before averaging")
        fail(f"your mu gives a summed cosine distance of {float(total):.6f}, but {float(optimum):.6f} is reachable; "
             "the minimiser points along Σᵢ xᵢ/‖xᵢ‖")
    mean = x.mean(0)
    gap = float((1 - unit @ (mean / mean.norm())).sum() - optimum)
    return passed(f"your centre minimises the summed cosine distance on fresh points (the plain mean would give "
                  f"{gap:.4f} more on the last set); only the direction of mu matters")


# ------------------------------------------------------------------------------------ exercise 3

def check_linear_classifier(fn: Callable[[Tensor], tuple[Tensor, Tensor]] | None) -> bool:
    """Exercise 3: ``fn(prototypes [n_way, d]) -> (W [n_way, d], b [n_way])`` of the nearest-prototype classifier."""
    if fn is None:
        return _todo("define linear_classifier(prototypes) returning (W, b)")
    forbid_calls(fn, {"course_lib.algorithms.protonet.prototype_linear_classifier": protonet.prototype_linear_classifier,
                      "course_lib.algorithms.protonet.ProtoNet": protonet.ProtoNet},
                 "W and b from the expansion of −‖z − μ_c‖²")
    g = fresh_generator()
    n_way, d = (int(v) for v in torch.randint(3, 7, (2,), generator=g))
    mu = 2 * torch.randn(n_way, d, generator=g, dtype=torch.float64)
    out = _call(fn, f"prototypes [{n_way}, {d}]", mu.clone())
    if out is None or (isinstance(out, tuple) and any(v is None for v in out)):
        return _todo("your function returns None; return the pair (W, b)")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"return a pair (W, b), got {type(out).__name__}")
    W, b = as_tensor(out[0], "W"), as_tensor(out[1], "b")
    if tuple(W.shape) != tuple(mu.shape):
        fail(f"W must have one row per class, shape {tuple(mu.shape)}, got {tuple(W.shape)}")
    if tuple(b.shape) != tuple(mu.shape[:-1]):
        fail(f"b must have one entry per class, shape {tuple(mu.shape[:-1])}, got {tuple(b.shape)}")
    sq = mu.pow(2).sum(-1)
    if torch.allclose(W, mu):
        fail("W = μ is missing a factor: expanding −‖z − μ‖² gives the cross term +2 μ·z")
    if not torch.allclose(W, 2 * mu, atol=1e-6):
        fail("expand −‖z − μ_c‖² = −‖z‖² + 2 μ_c·z − ‖μ_c‖² and read off the coefficient of z")
    if torch.allclose(b, sq, atol=1e-6):
        fail("the sign of b is flipped: the logit is −distance, so the ‖μ_c‖² term enters with a minus")
    if torch.allclose(b, -sq.sqrt(), atol=1e-6):
        fail("b uses ‖μ_c‖; the expansion of the *squared* distance gives −‖μ_c‖²")
    if torch.allclose(b, -sq / 2, atol=1e-6):
        fail("with W = 2μ the bias is −‖μ_c‖² (no factor 1/2); W = μ, b = −‖μ‖²/2 is the same classifier "
             "scaled by 1/2, but the exercise asks for the exact logits up to the −‖z‖² term")
    if not torch.allclose(b, -sq, atol=1e-6):
        fail("b is not −‖μ_c‖²; it is the part of −‖z − μ_c‖² that depends on the class but not on z")
    return passed(f"W = 2μ and b = −‖μ‖² for {n_way} fresh classes: squared-Euclidean ProtoNet is a linear classifier")


# ------------------------------------------------------------------------------------ exercise 4

def _vote(dist: Tensor, worked: Tensor, n_neighbors: int, largest: bool = False) -> tuple[Tensor, bool]:
    """Private reference of exercise 4: the majority vote, and whether every row's vote has a single winner."""
    near = worked[dist.topk(n_neighbors, dim=1, largest=largest).indices]             # [new, n_neighbors]
    counts = torch.nn.functional.one_hot(near, int(worked.max()) + 1).sum(1)            # [new, resources]
    top = counts.topk(2, dim=1).values if counts.shape[1] > 1 else torch.cat([counts, torch.zeros_like(counts)], 1)
    return counts.argmax(1), bool((top[:, 0] > top[:, 1]).all())


def _knn_case(g: torch.Generator, n_neighbors: int) -> tuple[Tensor, Tensor]:
    """Fresh distances and resources whose nearest and farthest votes have single, different winners."""
    for _ in range(10_000):
        new, past = int(torch.randint(3, 6, (1,), generator=g)), int(torch.randint(9, 15, (1,), generator=g))
        dist = torch.rand(new, past, generator=g) * 5
        worked = torch.randint(0, 3, (past,), generator=g)
        near, clear_near = _vote(dist, worked, n_neighbors)
        far, clear_far = _vote(dist, worked, n_neighbors, largest=True)
        first = worked[:n_neighbors].mode().values
        if (clear_near and clear_far and not torch.equal(near, far) and not (near == first).all()
                and not (far == first).all()):
            return dist, worked
    raise RuntimeError("could not draw a knn example; this is a bug in the check")


def check_knn_recommend(fn: Callable[[Tensor, Tensor, int], Tensor] | None) -> bool:
    """Exercise 4: ``fn(dist [new, past], worked [past] long, n_neighbors) -> [new]``: majority vote of
    the n_neighbors nearest past learners (chapter 02, section 8)."""
    if fn is None:
        return _todo("define recommend(dist, worked, n_neighbors)")
    forbid_calls(fn, {}, "the vote among the nearest learners",
                 forbidden_names={"knn_recommend": "the notebook's own recommender of section 8"})
    g = fresh_generator()
    dist, worked = _knn_case(g, 3)
    new = dist.shape[0]
    got = _call(fn, f"dist [{new}, {dist.shape[1]}], worked [{dist.shape[1]}], n_neighbors=3", dist.clone(),
                worked.clone(), 3)
    if got is None:
        return _todo("your function returns None; return one recommended resource per new learner")
    got = _resources(got, "recommend's result")
    expected, _ = _vote(dist, worked, 3)
    if got.shape != expected.shape:
        fail(f"return one resource per new learner: expected shape ({new},), got {tuple(got.shape)}")
    if torch.equal(got, _vote(dist, worked, 3, largest=True)[0]):
        fail("you voted among the n_neighbors farthest learners; sort distances ascending (topk(..., largest=False))")
    if not torch.equal(got, expected):
        fail(f"expected {expected.tolist()} for the check's random example, got {got.tolist()}; take the "
             "n_neighbors smallest distances in each row and return the most frequent 'worked' value among them")
    got1 = _resources(_call(fn, "the same example with n_neighbors=1", dist.clone(), worked.clone(), 1),
                      "recommend's result")
    nearest = worked[dist.argmin(1)]
    if not torch.equal(got1, nearest):
        fail(f"with n_neighbors=1 the answer is the nearest learner's resource, {nearest.tolist()}; got {got1.tolist()}")
    return passed("recommend() votes among the n_neighbors nearest past learners")
