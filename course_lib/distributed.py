"""Data-parallel meta-training on torch.distributed: one meta-batch, sharded over processes.

Derived in chapter 08 (Scaling meta-training), section 5. With W processes (ranks), every
meta-iteration

1. draws the same meta-batch of T tasks on every rank (one shared, seeded task sampler), and
   rank r keeps its shard of T / W tasks;
2. computes its shard's meta-gradient with the vmapped core of chapters 03-04 (`maml_loss`,
   `reptile_direction`): the mean over its T / W tasks;
3. averages the W meta-gradients with one ``all_reduce`` (a sum over ranks divided by W, which is
   the mean over all T tasks because the shards are equal);
4. takes the same optimiser step on every rank, so θ stays identical everywhere.

The result equals one process on the whole meta-batch, up to floating-point summation order
(tests/test_distributed.py checks it). Communication per step is one all_reduce of the parameter
bytes (7 KB for the sinusoid network), whatever the meta-batch.

The backend is chosen from the device: gloo on the CPU, nccl on CUDA. Launch::

    torchrun --standalone --nproc-per-node=2 -m course_lib.distributed --algo maml --iterations 1000
    # across machines (run on every node, node-rank 0 .. N-1):
    torchrun --nnodes=2 --node-rank=$NODE_RANK --nproc-per-node=4 --rdzv-backend=c10d \\
             --rdzv-endpoint=$HEAD_NODE:29500 -m course_lib.distributed --algo maml ...
    # without torchrun: the same entry point runs in one process
    python -m course_lib.distributed --algo reptile --iterations 100

Rank 0 writes a checkpoint every ``--checkpoint-every`` steps (atomically, `course_lib.checkpoint`);
``--resume`` continues from it, with any world size. A rank that dies makes the others stop with
an error within ``--timeout-s`` seconds instead of hanging.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from course_lib.algorithms import maml_loss, reptile_direction
from course_lib.algorithms.functional import Params, adam, get_loss
from course_lib.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from course_lib.device import cpu_threads, get_device
from course_lib.experiments.common import Registry, Result, json_safe, save_json
from course_lib.models.regressor import mlp_regressor
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

__all__ = ["DistConfig", "Rank", "ALGORITHMS", "backend_for", "connect", "shard", "all_reduce_mean",
           "train", "launch", "worker_errors", "fork_workers", "main"]


@dataclasses.dataclass(frozen=True)
class DistConfig:
    """Settings of one data-parallel meta-training run (every rank gets the same)."""

    algo: str = "maml"             # maml | fomaml | reptile
    iterations: int = 100          # meta-iterations (outer steps)
    meta_batch: int = 32           # tasks per meta-iteration over ALL ranks (T); each rank takes T / W
    k_shot: int = 10               # K support points per task (and K query points)
    inner_steps: int = 1           # inner gradient steps
    alpha: float = 0.01            # inner step size α
    beta: float = 0.0              # outer step size β; 0 = the algorithm's default (1e-3 Adam, 0.1 SGD)
    seed: int = 0
    dtype: str = "float32"         # float32 | float64
    checkpoint: str = ""           # checkpoint file ("" = none)
    checkpoint_every: int = 0      # write it every N steps (0 = only at the end, if a file is given)
    resume: bool = False           # continue from the checkpoint
    timeout_s: float = 60.0        # a collective waiting longer than this fails (a dead or stuck rank)
    warmup: int = 2                # iterations left out of the timings
    threads: int = 1               # CPU threads per process
    fail_at_step: int = 0          # fault injection (tests, chapter 08): exit at this step ...
    fail_rank: int = -1            # ... on this rank


@dataclasses.dataclass(frozen=True)
class Rank:
    """Where this process is: its rank, the world size, and whether a process group is up."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    grouped: bool = False


# ------------------------------------------------------------------ the algorithms' meta-gradients

MetaGrad = Callable[[nn.Module, Params, TaskBatch, DistConfig], tuple[Params, Tensor]]
ALGORITHMS: Registry[MetaGrad] = Registry("algorithm")
DEFAULT_BETA = {"maml": 1e-3, "fomaml": 1e-3, "reptile": 0.1}


def _maml(first_order: bool) -> MetaGrad:
    def meta_grad(model: nn.Module, theta: Params, batch: TaskBatch, cfg: DistConfig) -> tuple[Params, Tensor]:
        def loss(th: Params) -> Tensor:
            return maml_loss(model, th, batch, loss_fn=get_loss("mse"), alpha=cfg.alpha, steps=cfg.inner_steps,
                             first_order=first_order)
        return torch.func.grad_and_value(loss)(theta)
    return meta_grad


ALGORITHMS.register("maml")(_maml(first_order=False))
ALGORITHMS.register("fomaml")(_maml(first_order=True))


@ALGORITHMS.register("reptile")
def _reptile(model: nn.Module, theta: Params, batch: TaskBatch, cfg: DistConfig) -> tuple[Params, Tensor]:
    mse = get_loss("mse")
    with torch.no_grad():
        direction = reptile_direction(model, theta, batch, loss_fn=mse, alpha=cfg.alpha, steps=cfg.inner_steps)
        loss = maml_loss(model, theta, batch, loss_fn=mse, alpha=cfg.alpha, steps=0)  # query loss of θ
    return direction, loss


def make_optimizer(algo: str, params: list[Tensor], beta: float) -> torch.optim.Optimizer:
    """Adam(β) for MAML and FOMAML (the paper's), SGD(β) for Reptile (θ ← θ + β(φ̄ − θ))."""
    return torch.optim.SGD(params, lr=beta) if algo == "reptile" else adam(params, beta)


# ------------------------------------------------------------------ process group

def backend_for(device: torch.device) -> str:
    """nccl on CUDA, gloo everywhere else (the CPU)."""
    return "nccl" if device.type == "cuda" else "gloo"


def connect(device: torch.device, timeout_s: float) -> Rank:
    """Join the process group torchrun set up (env://), or run alone when not launched by torchrun.

    A torchrun launch sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; a half-set environment or
    a rendezvous that cannot be reached gets an error that says how to launch.
    """
    if "WORLD_SIZE" not in os.environ and "RANK" not in os.environ:
        return Rank()
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"missing rendezvous: {missing} not set. Launch with torchrun "
                           "(torchrun --standalone --nproc-per-node=2 -m course_lib.distributed ...) or unset "
                           "RANK/WORLD_SIZE to run in one process")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend_for(device), rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    except Exception as err:  # noqa: BLE001 - rendezvous errors come in several types
        raise RuntimeError(f"rank {rank}: could not join the rendezvous at {os.environ['MASTER_ADDR']}:"
                           f"{os.environ['MASTER_PORT']} ({type(err).__name__}: {str(err)[:200]}). Check that "
                           "every node runs the same torchrun command and the endpoint is reachable") from None
    return Rank(rank, world, local_rank, grouped=True)


def shard(batch: TaskBatch, rank: Rank) -> TaskBatch:
    """Rank r's tasks ``[r·T/W, (r+1)·T/W)`` of a meta-batch of T tasks: ``[tasks/W, k_shot, ...]``."""
    n = batch.x_support.shape[0]
    check_world(n, rank.world)
    size = n // rank.world
    part = slice(rank.rank * size, (rank.rank + 1) * size)
    return TaskBatch(batch.x_support[part], batch.y_support[part], batch.x_query[part], batch.y_query[part])


def check_world(meta_batch: int, world: int) -> None:
    """A meta-batch of ``meta_batch`` tasks must split into ``world`` equal, non-empty shards."""
    if world > meta_batch:
        raise ValueError(f"more ranks ({world}) than tasks in the meta-batch ({meta_batch}): every rank needs "
                         f"at least one task; use --meta-batch {world} or more, or fewer processes")
    if meta_batch % world:
        fit = (meta_batch // world + 1) * world
        raise ValueError(f"the meta-batch ({meta_batch} tasks) is not divisible by the world size ({world}); "
                         f"use --meta-batch {fit} (or {meta_batch - meta_batch % world}) so every rank gets "
                         "the same number of tasks")


def all_reduce_mean(grads: Params, rank: Rank, step: int) -> Params:
    """The mean of every rank's meta-gradient: one flat all_reduce (sum) divided by the world size."""
    if not rank.grouped or rank.world == 1:
        return grads
    names = list(grads)
    flat = torch.cat([grads[k].reshape(-1) for k in names])
    try:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    except Exception as err:  # noqa: BLE001 - gloo/nccl raise several types when a peer is gone
        raise RuntimeError(f"rank {rank.rank}: all_reduce at step {step} failed ({type(err).__name__}: "
                           f"{str(err)[:200]}). Another rank probably died (see its error above) or is stuck "
                           "past the timeout; restart with --resume to continue from the last checkpoint") from None
    flat /= rank.world
    out, start = {}, 0
    for k in names:
        n = grads[k].numel()
        out[k] = flat[start:start + n].view_as(grads[k])
        start += n
    return out


# ------------------------------------------------------------------ training

@dataclasses.dataclass
class _State:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    sampler: torch.Generator
    step: int = 0


def _validate(cfg: DistConfig) -> None:
    ALGORITHMS[cfg.algo]
    if cfg.iterations < 1 or cfg.meta_batch < 1 or cfg.k_shot < 1:
        raise ValueError("iterations, meta_batch and k_shot must be >= 1")
    if cfg.algo == "reptile" and cfg.inner_steps < 1:
        raise ValueError("Reptile needs inner_steps >= 1")
    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {cfg.dtype!r}")
    if cfg.resume and not cfg.checkpoint:
        raise ValueError("--resume needs --checkpoint FILE (the file to continue from)")


def _initial_state(cfg: DistConfig, device: torch.device) -> _State:
    """θ from the seed, a fresh optimiser and task sampler; or everything from the checkpoint (resume)."""
    torch.manual_seed(cfg.seed)
    model = mlp_regressor().to(device=device, dtype=getattr(torch, cfg.dtype))
    opt = make_optimizer(cfg.algo, list(model.parameters()), cfg.beta or DEFAULT_BETA[cfg.algo])
    state = _State(model, opt, torch.Generator().manual_seed(cfg.seed + 1))
    if cfg.resume:
        saved = load_checkpoint(cfg.checkpoint, map_location=device)
        same = {k: saved["config"].get(k) for k in ("algo", "meta_batch", "k_shot", "inner_steps", "dtype")}
        if same != {k: getattr(cfg, k) for k in same}:
            raise ValueError(f"the checkpoint {cfg.checkpoint} was written with {same}; resume with the same settings")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        restore_rng(saved["rng"], state.sampler)
        state.step = int(saved["step"])
    return state


def _save(cfg: DistConfig, state: _State) -> None:
    save_checkpoint(cfg.checkpoint, {
        "step": state.step, "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "rng": capture_rng(state.sampler), "config": json_safe(dataclasses.asdict(cfg))})


def _step(cfg: DistConfig, state: _State, rank: Rank, device: torch.device, times: dict) -> Tensor:
    """One meta-iteration on this rank: sample, shard, meta-gradient, all_reduce, optimiser step."""
    t0 = time.perf_counter()
    batch, _, _ = sample_sinusoid_tasks(cfg.meta_batch, cfg.k_shot, generator=state.sampler)
    dtype = getattr(torch, cfg.dtype)
    mine = shard(batch, rank)
    mine = TaskBatch(*(t.to(device=device, dtype=dtype) for t in
                       (mine.x_support, mine.y_support, mine.x_query, mine.y_query)))
    t1 = time.perf_counter()
    theta = {k: p.detach() for k, p in state.model.named_parameters()}
    grads, loss = ALGORITHMS[cfg.algo](state.model, theta, mine, cfg)
    t2 = time.perf_counter()
    grads = all_reduce_mean({**grads, "_loss": loss.detach().reshape(1)}, rank, state.step + 1)
    loss = grads.pop("_loss")[0]  # the mean loss over all T tasks, like the meta-gradient
    t3 = time.perf_counter()
    for k, p in state.model.named_parameters():
        p.grad = grads[k]
    state.optimizer.step()
    state.step += 1
    t4 = time.perf_counter()
    for name, dt in (("sample", t1 - t0), ("meta_gradient", t2 - t1), ("all_reduce", t3 - t2), ("optimizer", t4 - t3)):
        times[name] = times.get(name, 0.0) + dt
    return loss


def train(config: DistConfig, *, progress: bool = False, device: torch.device | str | None = None) -> Result:
    """Meta-train on this rank (all ranks when launched by torchrun); every rank returns the same θ.

    Returns a `Result`: one row (algorithm, world size, meta-batch, tasks per rank, final loss);
    ``details["theta"]`` the final parameters, ``details["history"]`` the loss per step,
    ``details["timings"]`` ms per iteration and tasks per second (after ``warmup`` iterations), and
    ms per iteration in sampling / meta-gradient / all_reduce / optimiser.
    """
    from tqdm.auto import tqdm

    _validate(config)
    device = torch.device(device) if device is not None else get_device()
    with cpu_threads(config.threads if device.type == "cpu" else None):
        rank = connect(device, config.timeout_s)
        check_world(config.meta_batch, rank.world)
        state = _initial_state(config, device)
        times: dict[str, float] = {}
        losses, t_start, timed = [], time.perf_counter(), 0
        bar = tqdm(total=config.iterations, initial=state.step, desc=f"{config.algo} x{rank.world}",
                   disable=not progress or rank.rank != 0)
        while state.step < config.iterations:
            if state.step + 1 == config.fail_at_step and rank.rank == config.fail_rank:
                print(f"rank {rank.rank}: injected failure at step {state.step + 1} (unix time {time.time():.3f})",
                      file=sys.stderr, flush=True)
                os._exit(3)
            if state.step == config.warmup or (timed == 0 and state.step > config.warmup):
                times.clear()
                t_start, timed = time.perf_counter(), 0
            losses.append(_step(config, state, rank, device, times))
            timed += 1
            bar.update()
            if config.checkpoint and rank.rank == 0 and config.checkpoint_every and \
                    state.step % config.checkpoint_every == 0:
                _save(config, state)
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t_start
        if config.checkpoint and rank.rank == 0:
            _save(config, state)
    return _result(config, state, rank, losses, times, wall, timed)


def _result(cfg: DistConfig, state: _State, rank: Rank, losses: list[Tensor], times: dict, wall: float,
            timed: int) -> Result:
    per = 1e3 / max(timed, 1)
    ms = per * wall
    row = {"algo": cfg.algo, "world_size": rank.world, "meta_batch": cfg.meta_batch,
           "tasks_per_rank": cfg.meta_batch // rank.world,
           "final_loss": float(losses[-1]) if losses else float("nan")}
    theta = {k: p.detach().cpu() for k, p in state.model.named_parameters()}
    param_bytes = sum(p.numel() * p.element_size() for p in theta.values())
    timings = {"ms_per_iter": ms, "tasks_per_s": cfg.meta_batch * 1e3 / ms if ms > 0 else float("nan"),
               "iterations_timed": timed} | {f"{k}_ms": per * v for k, v in times.items()}
    return Result("distributed", [row], dataclasses.asdict(cfg), wall,
                  {"theta": theta, "history": [float(v) for v in losses], "param_bytes": param_bytes,
                   "timings": timings})


# ------------------------------------------------------------------ command line

def parser() -> argparse.ArgumentParser:
    """One ``--flag`` per `DistConfig` field (``--meta-batch 32``, ``--resume``), plus --json/--device."""
    p = argparse.ArgumentParser(prog="python -m course_lib.distributed", description=__doc__.split("\n")[0])
    for f in dataclasses.fields(DistConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action="store_true", dest=f.name)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(flag, type=kind, default=f.default, dest=f.name)
    p.add_argument("--json", default="", help="rank 0 writes the result (θ, history, timings) here")
    p.add_argument("--device", default=None, help="cpu | cuda (default: the best available)")
    p.add_argument("--progress", action="store_true", help="show a progress bar on rank 0")
    p.add_argument("--fork-workers", type=int, default=0, metavar="N",
                   help="start N ranks forked from this process (Linux, CPU; what launch(launcher='fork') runs)")
    return p


def to_flags(config: DistConfig) -> list[str]:
    """The command-line flags that reproduce ``config`` (only the fields that differ from the defaults)."""
    out: list[str] = []
    for f in dataclasses.fields(DistConfig):
        value = getattr(config, f.name)
        if value != f.default:
            flag = "--" + f.name.replace("_", "-")
            out += [flag] if value is True else [flag, str(value)]
    return out


LAUNCHERS = ("torchrun", "fork")


def launch(config: DistConfig, nproc: int = 2, *, device: str = "cpu", timeout_s: float = 300,
           launcher: str = "torchrun") -> Result:
    """Run ``nproc`` data-parallel processes in a subprocess and read rank 0's result.

    ``launcher="torchrun"`` runs ``torchrun --standalone --nproc-per-node=nproc -m course_lib.distributed``:
    every worker is a fresh interpreter that imports PyTorch itself (about 0.45 GiB each with a CUDA
    build of PyTorch, plus 0.33 GiB for torchrun's agent). ``launcher="fork"`` (Linux, CPU) runs one
    interpreter that imports PyTorch, takes one warm-up step, and lets torch's elastic agent (the one
    torchrun uses) *fork* the workers, so all of them share that memory: about 0.7 GiB for the three
    processes instead of 1.25 (chapter 08, section 6: what fits in Binder's 2 GB). Both are the same
    training code on the same gloo rendezvous; one thread per process, on the loopback interface.
    A failed or timed-out run raises ``RuntimeError`` with the end of its error output.
    """
    import subprocess
    import tempfile
    from pathlib import Path

    from course_lib.experiments.common import load_json

    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; use one of {LAUNCHERS}")
    if launcher == "fork" and (device != "cpu" or not sys.platform.startswith("linux")):
        raise ValueError(f"launcher='fork' shares one process's memory between CPU workers on Linux (here: "
                         f"device={device!r}, {sys.platform}); CUDA cannot be used in a forked process, so use "
                         "launcher='torchrun'")
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env |= {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "COURSE_DEVICE": device,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    if sys.platform == "linux":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [*to_flags(config), "--device", device, "--json", str(out)]
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "course_lib.distributed", *args]
        else:
            cmd = [sys.executable, "-m", "course_lib.distributed", "--fork-workers", str(nproc), *args]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{launcher} with {nproc} processes did not finish in {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{launcher} with {nproc} processes failed (exit code {proc.returncode}):\n"
                               f"{worker_errors(proc.stderr)}")
        return load_json(out)


_AGENT_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\] ")


def worker_errors(stderr: str, limit: int = 2500) -> str:
    """The end of the workers' error output without the elastic agent's log lines (``E1203 16:15:41 ...]``).

    The agent repeats each failed rank's traceback line by line in that format; without it, what is left
    (each rank's own message, then the launcher's one-line-per-rank summary) fits in ``limit`` characters.
    """
    return "\n".join(line for line in stderr.splitlines() if not _AGENT_LOG.match(line))[-limit:]


def fork_workers(config: DistConfig, nproc: int, *, device: str = "cpu", out: str = "") -> None:
    """Train ``nproc`` ranks forked from this process by torch's elastic agent (``launch(launcher="fork")``).

    One warm-up step first, in this process alone, so that PyTorch's lazy set-up (kernels, allocator
    pools, torch.func transforms) is done once and shared with the workers copy-on-write; then
    ``gc.freeze()``, so the workers' garbage collector does not touch (and so copy) the shared objects.
    """
    import gc
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ValueError(f"--fork-workers needs at least 1 process, got {nproc}")
    check_world(config.meta_batch, nproc)
    warm = dataclasses.replace(config, iterations=1, warmup=0, meta_batch=config.meta_batch // nproc,
                               checkpoint="", checkpoint_every=0, resume=False, fail_at_step=0)
    train(warm, device=device)
    gc.collect()
    gc.freeze()
    agent = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"course-{uuid.uuid4().hex[:8]}",
                         rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                         start_method="fork", monitor_interval=0.1)
    try:
        elastic_launch(agent, _run_rank)(config, device, out, False)
    except ChildFailedError as err:  # the agent's report is a page long; name each failed rank in a line
        lines = [f"rank {r}: exit code {f.exitcode}: "
                 f"{(f.message.get('message') if isinstance(f.message, dict) else f.message) or ''}"[:600]
                 for r, f in sorted(err.failures.items())]
        raise SystemExit("the forked workers failed:\n" + "\n".join(lines)) from None


def _run_rank(config: DistConfig, device: str | None, out: str, progress: bool) -> Result:
    """One rank: train, wait for the others, leave the process group; rank 0 prints and writes ``out``."""
    try:
        result = train(config, progress=progress, device=device)
        if dist.is_initialized():
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        row, ms = result.rows[0], result.details["timings"]["ms_per_iter"]
        print(f"{row['algo']}: {row['world_size']} process(es), meta-batch {row['meta_batch']}, "
              f"{ms:.2f} ms/iteration, final loss {row['final_loss']:.4f}")
        if out:
            save_json(result, out)
    return result


def main(argv: Sequence[str] | None = None) -> Result | None:
    """The entry point of ``torchrun ... -m course_lib.distributed`` and ``python -m course_lib.distributed``."""
    args = vars(parser().parse_args(argv))
    out, device, progress, nproc = args.pop("json"), args.pop("device"), args.pop("progress"), args.pop("fork_workers")
    if nproc:
        return fork_workers(DistConfig(**args), nproc, device=device or "cpu", out=out)
    return _run_rank(DistConfig(**args), device, out, progress)


if __name__ == "__main__":
    main()
