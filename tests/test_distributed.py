"""course_lib.distributed: 2 processes (torchrun, gloo) = 1 process on the union meta-batch; resume; failures.

The multi-process tests launch ``torchrun --standalone --nproc-per-node=2`` as a subprocess with
OMP_NUM_THREADS=1, MASTER_ADDR=127.0.0.1 and GLOO_SOCKET_IFNAME=lo, each with a timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_lib import distributed
from course_lib.distributed import DistConfig, Rank, check_world, shard, train
from course_lib.experiments.common import load_json
from course_lib.tasks import sample_sinusoid_tasks

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(iterations=20, meta_batch=8, k_shot=5, warmup=0)
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for k in ENV_KEYS:
        monkeypatch.delenv(k, raising=False)


def torchrun(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env |= {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo",
            "PYTHONPATH": str(ROOT), "COURSE_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "course_lib.distributed", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def flags(**kw) -> list[str]:
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


def max_diff(a: dict, b: dict) -> float:
    return max(float((torch.as_tensor(a[k]) - torch.as_tensor(b[k])).abs().max()) for k in a)


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile"])
def test_two_processes_equal_one_process_on_the_union_batch(algo, tmp_path):
    kw = SMALL | {"algo": algo, "inner_steps": 1 if algo != "reptile" else 3}
    out = tmp_path / "two.json"
    proc = torchrun(flags(**kw, json=out, device="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_json(out)
    one = train(DistConfig(**kw), device="cpu")
    assert two.rows[0]["world_size"] == 2 and one.rows[0]["world_size"] == 1
    assert max_diff(two.details["theta"], one.details["theta"]) <= 1e-5
    assert max_diff(one.details["theta"], train(DistConfig(**kw | {"iterations": 1}), device="cpu").details["theta"]) > 1e-3
    assert abs(two.details["history"][-1] - one.details["history"][-1]) <= 1e-4  # the loss is the union's too


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    ck = tmp_path / "ck.pt"
    kw = SMALL | {"checkpoint": str(ck), "checkpoint_every": 5}
    proc = torchrun(flags(**kw, fail_at_step=12, fail_rank=1, device="cpu"))
    assert proc.returncode != 0 and "injected failure at step 12" in proc.stderr
    assert torch.load(ck, weights_only=True)["step"] == 10
    resumed = train(DistConfig(**kw, resume=True), device="cpu")  # resharded: 2 processes -> 1
    straight = train(DistConfig(**SMALL), device="cpu")
    assert max_diff(resumed.details["theta"], straight.details["theta"]) <= 1e-5
    assert len(resumed.details["history"]) == 10  # only steps 11..20 were run again


def test_resume_in_one_process_is_bitwise_identical(tmp_path):
    ck = tmp_path / "ck.pt"
    kw = SMALL | {"algo": "maml", "checkpoint": str(ck)}
    train(DistConfig(**kw | {"iterations": 7}), device="cpu")
    resumed = train(DistConfig(**kw, resume=True), device="cpu")
    straight = train(DistConfig(**SMALL), device="cpu")
    for k, v in straight.details["theta"].items():
        assert torch.equal(resumed.details["theta"][k], v), k
    with pytest.raises(ValueError, match="same settings"):
        train(DistConfig(**kw | {"meta_batch": 4}, resume=True), device="cpu")


def test_a_dead_rank_stops_the_others_within_the_timeout():
    proc = torchrun(flags(**SMALL | {"iterations": 200}, fail_at_step=3, fail_rank=1, timeout_s=10, device="cpu"))
    stopped = time.time()
    assert proc.returncode != 0
    failed = re.search(r"rank 1: injected failure at step 3 \(unix time ([0-9.]+)\)", proc.stderr)
    assert failed, proc.stderr[-2000:]
    # Counted from the failure, not from the launch: starting torch in three processes alone can take
    # a minute on a loaded machine. The survivor's collective times out after 10 s, then torchrun tears down.
    elapsed = stopped - float(failed.group(1))
    assert elapsed < 60, f"the surviving rank took {elapsed:.0f} s to stop after rank 1 died"


def test_the_fork_launcher_trains_the_same_theta_and_reports_a_dead_rank():
    """launch(launcher="fork"): workers forked from one warmed-up process (chapter 08's memory-lean launch)."""
    kw = SMALL | {"algo": "maml"}
    two = distributed.launch(DistConfig(**kw), nproc=2, launcher="fork", timeout_s=300)
    one = train(DistConfig(**kw), device="cpu")
    assert two.rows[0]["world_size"] == 2
    assert max_diff(two.details["theta"], one.details["theta"]) <= 1e-5
    # Which rank the agent's summary names is a race: the survivor's all_reduce fails at once (connection
    # reset) or the agent, polling every 0.1 s, stops it first. Either way the dead rank's own line is kept.
    with pytest.raises(RuntimeError, match="(?s)fork with 2 processes failed.*rank 1: injected failure at step 3"
                                           ".*forked workers failed:\nrank [01]: exit code [13]"):
        distributed.launch(DistConfig(**kw, fail_at_step=3, fail_rank=1, timeout_s=10), nproc=2, launcher="fork",
                           timeout_s=300)


def test_bad_world_sizes_get_clear_errors():
    with pytest.raises(ValueError, match="not divisible by the world size"):
        check_world(10, 4)
    with pytest.raises(ValueError, match="more ranks"):
        check_world(2, 4)
    batch, _, _ = sample_sinusoid_tasks(6, 3)
    parts = [shard(batch, Rank(r, 3)) for r in range(3)]
    assert torch.equal(torch.cat([p.x_support for p in parts]), batch.x_support)


def test_missing_rendezvous_is_reported(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="missing rendezvous.*MASTER_ADDR"):
        train(DistConfig(**SMALL), device="cpu")
    monkeypatch.setenv("RANK", "1")  # a rank whose rendezvous host never comes up
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29")
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="could not join the rendezvous"):
        train(DistConfig(**SMALL, timeout_s=3), device="cpu")
    assert time.perf_counter() - t0 < 30


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown algorithm"):
        train(DistConfig(algo="sgd"))
    with pytest.raises(ValueError, match="--resume needs --checkpoint"):
        train(DistConfig(resume=True))
    with pytest.raises(ValueError, match="unknown launcher 'mpirun'"):
        distributed.launch(DistConfig(), launcher="mpirun")
    with pytest.raises(ValueError, match="CUDA cannot be used in a forked process"):
        distributed.launch(DistConfig(), launcher="fork", device="cuda")
    args = distributed.parser().parse_args(["--meta-batch", "16", "--resume", "--checkpoint", "x.pt"])
    assert args.meta_batch == 16 and args.resume is True


def test_worker_errors_drops_the_agents_log_lines_and_keeps_each_ranks_message():
    stderr = ("rank 1: injected failure at step 3 (unix time 1796314540.943)\n"
              "W1203 16:15:40.988000 17606 .venv/lib/python3.11/site-packages/torch/multiprocessing/spawn.py:165] "
              "Terminating process 17612 via signal SIGTERM\n"
              "E1203 16:15:41.006000 17606 torch/distributed/elastic/multiprocessing/api.py:836]   File \"x.py\"\n"
              "the forked workers failed:\nrank 1: exit code 3: \n")
    assert distributed.worker_errors(stderr) == ("rank 1: injected failure at step 3 (unix time 1796314540.943)\n"
                                                 "the forked workers failed:\nrank 1: exit code 3: ")
    assert distributed.worker_errors("x" * 3000 + "\nend", limit=10) == "xxxxxx\nend"
