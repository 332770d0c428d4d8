"""Checks for chapter 08 (Scaling meta-training).

Each check returns True with a PASS message for a right answer, returns False with a reminder
when the answer is still the unfilled placeholder ``None``, and raises ``ExerciseError`` with a
hint for a wrong answer. Every check draws fresh random inputs at each call and rejects an answer
that calls the implementation the exercise asks for (`course_lib.distributed`'s sharding, or this
module's reference answers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from course_lib import distributed
from course_lib.exercises import (as_array, as_number, as_tensor, call as _call, fail, fresh_generator, fresh_rng,
                                  passed, todo as _todo)
from course_lib.exercises.guard import forbid_calls

__all__ = ["check_shard_range", "check_union_mean", "check_ring_bytes", "union_mean", "ring_bytes"]


# ------------------------------------------------------------------ exercise 1: a rank's shard

def check_shard_range(fn: Callable | None) -> bool:
    """Exercise 1: ``fn(rank, world, meta_batch) -> (start, stop)``, rank r's tasks [start, stop)."""
    if fn is None:
        return _todo("define shard_range(rank, world, meta_batch) and pass it to the check")
    forbid_calls(fn, {"course_lib.distributed": distributed, "course_lib.distributed.shard": distributed.shard},
                 "the shard boundaries from r, W and T")
    rng = fresh_rng()
    worlds = [int(w) for w in rng.integers(2, 9, size=3)]
    for world, batch in ((2, 8), (1, 5), *((w, w * int(rng.integers(1, 13))) for w in worlds)):
        got = []
        for rank in range(world):
            r = _call(fn, f"shard_range({rank}, {world}, {batch})", rank, world, batch)
            if r is None:
                return _todo("your function returns None; return (start, stop)")
            pair = as_array(r, f"shard_range({rank}, {world}, {batch})").reshape(-1)
            if pair.shape != (2,) or not (pair == pair.round()).all():
                fail(f"shard_range({rank}, {world}, {batch}) must return a pair of task indices (start, stop), "
                     f"got {r!r}")
            got.append((int(pair[0]), int(pair[1])))
        size = batch // world
        expected = [(r * size, (r + 1) * size) for r in range(world)]
        if got == expected:
            continue
        if got == [(r * size, (r + 1) * size - 1) for r in range(world)]:
            fail("stop is exclusive, as in Python slices: rank r holds tasks r·T/W … (r+1)·T/W − 1, so stop = (r+1)·T/W")
        if any(a[1] - a[0] != size for a in got):
            fail(f"with W = {world} ranks and T = {batch} tasks every rank holds T/W = {size} tasks; "
                 f"you gave {[b - a for a, b in got]}")
        fail(f"the shards must tile the meta-batch in rank order: expected {expected}, got {got}")
    return passed("rank r holds tasks [r·T/W, (r+1)·T/W): equal shards that tile the meta-batch")


# ------------------------------------------------------------------ exercise 2: the union mean

def union_mean(shard_means: Sequence[torch.Tensor], shard_sizes: Sequence[int]) -> torch.Tensor:
    """The reference answer of exercise 2: the mean over all tasks from each shard's mean and size."""
    sizes = torch.tensor(shard_sizes, dtype=torch.float64)
    stacked = torch.stack([torch.as_tensor(m, dtype=torch.float64) for m in shard_means])
    return (stacked * sizes.reshape(-1, *([1] * (stacked.dim() - 1)))).sum(0) / sizes.sum()


def check_union_mean(fn: Callable | None) -> bool:
    """Exercise 2: ``fn(shard_means [W tensors], shard_sizes [W ints]) -> mean over all tasks``."""
    if fn is None:
        return _todo("define combine(shard_means, shard_sizes) and pass it to the check")
    forbid_calls(fn, {"course_lib.exercises.ch08.union_mean": union_mean,
                      "course_lib.distributed.all_reduce_mean": distributed.all_reduce_mean},
                 "the weighted mean of the shard means")
    g, rng = fresh_generator(), fresh_rng()
    for _ in range(2):
        world, dim = int(rng.integers(2, 6)), int(rng.integers(3, 7))
        sizes = [int(n) for n in rng.permutation(rng.choice(np.arange(1, 12), size=world, replace=False))]
        per_task = torch.randn(sum(sizes), dim, generator=g, dtype=torch.float64)
        means = [c.mean(0) for c in torch.split(per_task, sizes)]
        got = _call(fn, f"{world} shard means of shape [{dim}], sizes {sizes}", [m.clone() for m in means], list(sizes))
        if got is None:
            return _todo("your function returns None; return the mean over all tasks")
        got = as_tensor(got, "the combined mean")
        if got.shape != (dim,):
            fail(f"return one mean gradient of shape [{dim}], got shape {tuple(got.shape)}")
        if torch.allclose(got, per_task.mean(0), atol=1e-10):
            continue
        if torch.allclose(got, torch.stack(means).mean(0), atol=1e-10):
            fail("that is the plain mean of the shard means (what all_reduce / W gives); it equals the mean over "
                 "tasks only when every shard has the same size: weight each shard by its number of tasks")
        if torch.allclose(got, torch.stack(means).sum(0), atol=1e-10):
            fail("that is the sum of the shard means; divide, and weight each shard by its size")
        fail(f"for sizes {sizes} the mean over all tasks is Σᵣ nᵣ·ḡᵣ / Σᵣ nᵣ")
    return passed("weight each shard's mean by its size: Σ nᵣ·ḡᵣ / Σ nᵣ; with equal shards this is "
                  "all_reduce(sum) / W")


# ------------------------------------------------------------------ exercise 3: bytes on the wire

def ring_bytes(param_bytes: int, world: int) -> float:
    """The reference answer of exercise 3: bytes each rank sends in a ring all_reduce, 2(W−1)/W · P."""
    return 2 * (world - 1) / world * param_bytes


def check_ring_bytes(fn: Callable | None) -> bool:
    """Exercise 3: ``fn(param_bytes, world) -> bytes each rank sends per ring all_reduce``."""
    if fn is None:
        return _todo("define sent_bytes(param_bytes, world) and pass it to the check")
    forbid_calls(fn, {"course_lib.exercises.ch08.ring_bytes": ring_bytes}, "the bytes of the two ring phases")
    rng = fresh_rng()
    cases = [(7_052, 8), (7_052, 2), *((int(rng.integers(1_000, 10_000_000)), int(rng.integers(3, 65))) for _ in range(3)), (100, 1)]
    for p, w in cases:
        got = _call(fn, f"sent_bytes({p}, {w})", p, w)
        if got is None:
            return _todo("your function returns None; return a number of bytes")
        got = as_number(got, f"sent_bytes({p}, {w})")
        want = ring_bytes(p, w)
        if abs(got - want) <= 1e-6 * max(want, 1):
            continue
        for wrong, hint in ((p, "every rank does not send all P bytes once: a ring all_reduce is a "
                                "reduce-scatter then an all-gather"),
                            (2 * p, "close: each phase sends W−1 chunks of P/W bytes, not P"),
                            ((w - 1) / w * p, "that is one phase (reduce-scatter); the all-gather sends as much again"),
                            (w * p, "the bytes per rank do not grow with W in a ring; that is why it scales")):
            if abs(got - wrong) <= 1e-6 * max(wrong, 1):
                fail(f"for P = {p} bytes and W = {w}: {hint}")
        fail(f"for P = {p} bytes and W = {w} each rank sends 2(W−1)/W · P bytes; you gave {got}")
    return passed("a ring all_reduce sends 2(W−1)/W · P bytes per rank: under 2P whatever the number of ranks")
