"""Chapter 08 checks: right answers pass, placeholders report, typical wrong answers fail helpfully."""

from __future__ import annotations

import pytest
import torch

from notebook_solutions import notebook_solutions

from course_lib.distributed import Rank, shard
from course_lib.exercises import ExerciseError, ch08
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

SOLUTIONS = notebook_solutions("08")


def shard_range(rank, world, meta_batch):
    size = meta_batch // world
    return rank * size, (rank + 1) * size


def test_shard_range_check_agrees_with_the_library():
    assert ch08.check_shard_range(shard_range) is True
    assert ch08.check_shard_range(None) is False
    assert ch08.check_shard_range(lambda *a: None) is False
    batch, _, _ = sample_sinusoid_tasks(12, 2)
    for r in range(3):
        a, b = shard_range(r, 3, 12)
        assert torch.equal(shard(batch, Rank(r, 3)).x_support, batch.x_support[a:b])
    wrong = {"exclusive": lambda r, w, t: (r * (t // w), (r + 1) * (t // w) - 1),
             "T/W": lambda r, w, t: (r, r + 2),
             "tile": lambda r, w, t: shard_range(w - 1 - r, w, t),
             "raised": lambda r, w, t: 1 / 0}
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch08.check_shard_range(fn)


def test_union_mean_check():
    assert ch08.check_union_mean(SOLUTIONS["combine_solution"]) is True
    assert ch08.check_union_mean(None) is False
    wrong = {"plain mean": lambda m, n: torch.stack(m).mean(0), "sum of the shard": lambda m, n: torch.stack(m).sum(0),
             "shape": lambda m, n: torch.zeros(2), "Σᵣ": lambda m, n: m[0]}
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch08.check_union_mean(fn)
    # equal shards: the weighted mean is what all_reduce(sum) / W computes
    means = [torch.randn(4, dtype=torch.float64) for _ in range(3)]
    assert torch.allclose(ch08.union_mean(means, [5, 5, 5]), torch.stack(means).sum(0) / 3)


def test_ring_bytes_check():
    assert ch08.check_ring_bytes(SOLUTIONS["sent_bytes_solution"]) is True
    assert ch08.check_ring_bytes(None) is False
    wrong = {"reduce-scatter then": lambda p, w: p, "not P": lambda p, w: 2 * p, "one phase": lambda p, w: (w - 1) / w * p,
             "do not grow": lambda p, w: w * p, "2\\(W−1\\)": lambda p, w: p / w}
    for match, fn in wrong.items():
        with pytest.raises(ExerciseError, match=match):
            ch08.check_ring_bytes(fn)


@pytest.mark.parametrize("check, name", [(ch08.check_shard_range, "shard_range_solution"),
                                         (ch08.check_union_mean, "combine_solution"),
                                         (ch08.check_ring_bytes, "sent_bytes_solution")])
def test_the_notebooks_solutions_pass(check, name, capsys):
    assert check(SOLUTIONS[name]) is True
    assert "PASS" in capsys.readouterr().out


def test_answers_that_call_the_library_are_rejected():
    def via_shard(rank, world, meta_batch):
        ids = torch.arange(meta_batch)[:, None]
        part = shard(TaskBatch(ids, ids, ids, ids), Rank(rank, world))
        return int(part.x_support[0]), int(part.x_support[-1]) + 1

    assert via_shard(1, 4, 32) == shard_range(1, 4, 32)  # it would pass on behaviour alone
    for check, answer, name in [(ch08.check_shard_range, via_shard, "shard"),
                                (ch08.check_union_mean, lambda m, n: ch08.union_mean(m, n), "union_mean"),
                                (ch08.check_ring_bytes, lambda p, w: ch08.ring_bytes(p, w), "ring_bytes")]:
        with pytest.raises(ExerciseError, match=f"your answer calls .*{name}"):
            check(answer)


def test_checks_draw_fresh_inputs_at_every_call():
    seen = []

    def recording(param_bytes, world):
        seen.append((param_bytes, world))
        return 2 * (world - 1) / world * param_bytes

    ch08.check_ring_bytes(recording)
    ch08.check_ring_bytes(recording)
    assert seen[:len(seen) // 2] != seen[len(seen) // 2:]
