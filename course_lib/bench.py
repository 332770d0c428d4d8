"""Speed of meta-training: learn2learn vs course_lib, meta-batch scaling, 1 vs 2 processes.

Derived in chapter 03, section 7 (the cost of second order), chapter 04 (Reptile vs MAML) and
chapter 08 (scaling). The task is the MAML paper's sinusoid regression (1-40-40-1 ReLU, K = 10
support and 10 query points per task). One meta-iteration = adapt every task of the meta-batch,
compute the meta-gradient, take an Adam step (SGD for Reptile); batches are pre-drawn.

Three tables, each a registered measurement (``--set tables=speed,meta_batch,processes``):

* ``speed``: learn2learn vs course_lib eager vs compiled, per (algorithm, meta-batch, inner steps).
  Each configuration runs in a fresh subprocess so that its peak memory is its own: on CUDA the
  peak memory allocated by torch; on the CPU the growth of the peak resident set size (RSS), so the
  compiled rows include what compilation itself costs.
* ``meta_batch``: ms per meta-iteration and tasks per second for 1 … 1024 tasks (course_lib eager).
* ``processes``: data-parallel meta-training (`course_lib.distributed`) launched with torchrun on 1
  and 2 processes, strong scaling (the same meta-batch) and weak scaling (the same tasks per process).

All rows are measured in one run, so their ratios are comparable even on a shared, noisy machine;
absolute milliseconds are not. Timings live in ``details["timings"]`` (one entry per row), as the
study contract asks; `tables` joins them back for display.

Run: ``python -m course_lib.bench [--set tables=meta_batch] [--json FILE] [--device cuda]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable, Sequence

from course_lib.experiments.common import Registry, Result, cli, stopwatch

IMPLS = ("learn2learn", "course_lib", "course_lib-compiled")
ALGOS = ("maml", "fomaml", "reptile")


@dataclasses.dataclass(frozen=True)
class Config:
    """What to measure. ``tables`` picks the measurements; the rest sizes them."""

    tables: tuple[str, ...] = ("speed", "meta_batch", "processes")
    impls: tuple[str, ...] = IMPLS
    algos: tuple[str, ...] = ALGOS
    batches: tuple[int, ...] = (4, 25, 100)
    steps: tuple[int, ...] = (1, 5)
    scaling_batches: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    processes_batch: int = 64        # strong scaling: tasks per meta-iteration over all processes
    processes_iterations: int = 40
    threads: int = 1
    min_seconds: float = 1.5
    min_iters: int = 5
    max_iters: int = 2000


TABLES: Registry[Callable[[Config, str, bool], list[dict]]] = Registry("bench table")


# ------------------------------------------------------------------ timing one step

def time_step(step: Callable[[object], object], batches: Sequence, device: str, *, warmup: int = 3,
              min_iters: int = 5, min_seconds: float = 1.5, max_iters: int = 2000) -> tuple[float, int]:
    """(ms per call of ``step(batch)``, calls timed) after ``warmup`` calls (compilation included there).

    Cycles through ``batches``; runs at least ``min_iters`` calls and, if faster, up to ``min_seconds``
    (at most ``max_iters`` calls). On CUDA the device is synchronised before reading the clock.
    """
    import torch

    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for b in itertools.islice(itertools.cycle(batches), warmup):
        step(b)
    sync()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or (time.perf_counter() - t0 < min_seconds and n < max_iters):
        step(batches[n % len(batches)])
        n += 1
    sync()
    return 1e3 * (time.perf_counter() - t0) / n, n


def course_lib_step(algo: str, steps: int, device, compile: bool, alpha: float = 0.01) -> Callable:
    """``step(batch)``: one course_lib meta-iteration (MAML/FOMAML with Adam, Reptile with SGD)."""
    import torch

    from course_lib.algorithms import MAML, Reptile
    from course_lib.algorithms.functional import adam
    from course_lib.models.regressor import mlp_regressor

    torch.manual_seed(0)
    model = mlp_regressor().to(device)
    if algo == "reptile":
        learner = Reptile(model, "mse", alpha=alpha, steps=steps, beta=0.1)
        opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    else:
        learner = MAML(model, "mse", alpha=alpha, steps=steps, first_order=algo == "fomaml")
        opt = adam(learner.parameters(), 1e-3)
    return lambda b: learner.step(b, opt, compile)


def learn2learn_step(algo: str, steps: int, device, alpha: float = 0.01) -> Callable:
    """``step(batch)``: the same meta-iteration written with learn2learn's clone-and-loop MAML."""
    import learn2learn as l2l
    import torch
    from torch import nn

    from course_lib.models.regressor import mlp_regressor

    torch.manual_seed(0)
    meta = l2l.algorithms.MAML(mlp_regressor().to(device), lr=alpha, first_order=algo != "maml")
    opt = torch.optim.Adam(meta.parameters(), lr=1e-3) if algo != "reptile" else torch.optim.SGD(meta.parameters(), lr=0.1)
    mse = nn.functional.mse_loss

    def step(b):
        opt.zero_grad()
        total, deltas = 0.0, [torch.zeros_like(p) for p in meta.parameters()]
        for i in range(b.n_tasks):
            learner = meta.clone()
            x, y = ((torch.cat([b.x_support[i], b.x_query[i]]), torch.cat([b.y_support[i], b.y_query[i]]))
                    if algo == "reptile" else (b.x_support[i], b.y_support[i]))
            for _ in range(steps):
                learner.adapt(mse(learner(x), y))
            if algo == "reptile":
                for d, p, q in zip(deltas, meta.parameters(), learner.parameters()):
                    d += (p.detach() - q.detach()) / b.n_tasks
            else:
                total = total + mse(learner(b.x_query[i]), b.y_query[i])
        if algo == "reptile":
            for p, d in zip(meta.parameters(), deltas):
                p.grad = d
        else:
            (total / b.n_tasks).backward()
        opt.step()

    return step


# ------------------------------------------------------------------ table 1: learn2learn vs course_lib

def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux and bytes on macOS.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure(cfg: dict) -> dict:
    """Time one (impl, algo, batch, steps) configuration; runs inside a fresh subprocess."""
    import torch

    from course_lib.tasks import sample_sinusoid_tasks

    device = torch.device(cfg["device"])
    if device.type == "cpu":
        torch.set_num_threads(cfg["threads"])
    g = torch.Generator().manual_seed(0)
    batches = [sample_sinusoid_tasks(cfg["batch"], 10, 10, generator=g, device=device)[0] for _ in range(8)]
    step = (learn2learn_step(cfg["algo"], cfg["steps"], device) if cfg["impl"] == "learn2learn" else
            course_lib_step(cfg["algo"], cfg["steps"], device, compile=cfg["impl"] == "course_lib-compiled"))
    rss0 = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms, n = time_step(step, batches, str(device), min_iters=cfg["min_iters"], min_seconds=cfg["min_seconds"],
                      max_iters=cfg["max_iters"])
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else max(_rss_mb() - rss0, 0.0)
    return {"ms_per_iter": round(ms, 4), "peak_mb": round(peak, 2), "iters": n}


@TABLES.register("speed")
def _speed(config: Config, device: str, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    keys = [dict(table="speed", impl=i, algo=a, batch=b, steps=s, device=device)
            for a, b, s, i in itertools.product(config.algos, config.batches, config.steps, config.impls)]
    jobs = [k | dict(threads=config.threads, min_seconds=config.min_seconds, min_iters=config.min_iters,
                     max_iters=config.max_iters) for k in keys]
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        measured = list(tqdm(pool.imap(_measure, jobs), total=len(jobs), desc="speed", disable=not progress))
    return [k | {"timing": m} for k, m in zip(keys, measured)]


# ------------------------------------------------------------------ table 2: meta-batch scaling

def meta_batch_scaling(sizes: Sequence[int], *, algo: str = "maml", steps: int = 1, device: str = "cpu",
                       compile: bool = False, min_iters: int = 5, min_seconds: float = 0.5,
                       progress: bool = False) -> list[dict]:
    """ms per meta-iteration and tasks per second of course_lib for each meta-batch size in ``sizes``.

    Derived in chapter 08, section 2. Rows: ``{"batch", "ms_per_iter", "tasks_per_s", "iters"}``.
    """
    import torch
    from tqdm.auto import tqdm

    from course_lib.tasks import sample_sinusoid_tasks

    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be meta-batch sizes >= 1, got {sizes}")
    rows = []
    for size in tqdm(sizes, desc="meta-batch", disable=not progress):
        g = torch.Generator().manual_seed(size)
        batches = [sample_sinusoid_tasks(size, 10, 10, generator=g, device=device)[0] for _ in range(4)]
        step = course_lib_step(algo, steps, device, compile)
        ms, n = time_step(step, batches, device, warmup=2, min_iters=min_iters, min_seconds=min_seconds)
        rows.append({"batch": size, "ms_per_iter": ms, "tasks_per_s": 1e3 * size / ms, "iters": n})
    return rows


@TABLES.register("meta_batch")
def _meta_batch(config: Config, device: str, progress: bool) -> list[dict]:
    from course_lib.device import cpu_threads

    rows = []
    with cpu_threads(config.threads if device == "cpu" else None):
        for algo in config.algos:
            measured = meta_batch_scaling(config.scaling_batches, algo=algo, device=device,
                                          min_iters=config.min_iters, min_seconds=config.min_seconds / 3,
                                          progress=progress)
            rows += [dict(table="meta_batch", algo=algo, batch=m.pop("batch"), device=device, timing=m)
                     for m in measured]
    return rows


# ------------------------------------------------------------------ table 3: 1 vs 2 processes

@TABLES.register("processes")
def _processes(config: Config, device: str, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    from course_lib.distributed import DistConfig, launch

    import torch

    if device.startswith("cuda") and torch.cuda.device_count() < 2:
        device = "cpu"  # nccl needs one GPU per process; with one GPU the 2-process rows run on the CPU (gloo)
    per_rank = config.processes_batch // 2
    runs = [("strong", 1, config.processes_batch), ("strong", 2, config.processes_batch),
            ("weak", 1, per_rank)]  # weak, 2 processes = strong, 2 processes (same tasks per process)
    rows = []
    for scaling, nproc, batch in tqdm(runs, desc="processes", disable=not progress):
        dc = DistConfig(algo="maml", iterations=config.processes_iterations, meta_batch=batch, warmup=5)
        res = launch(dc, nproc, device=device)
        rows.append(dict(table="processes", scaling=scaling, processes=nproc, batch=batch, device=device,
                         param_bytes=res.details["param_bytes"], timing=res.details["timings"]))
    strong2 = rows[1]
    rows.append(dict(strong2, scaling="weak"))
    return rows


# ------------------------------------------------------------------ the study

def run(config: Config = Config(), *, progress: bool = True, device: str | None = None) -> Result:
    """Measure the chosen tables, all in this one run; timings go to ``details["timings"]`` row by row."""
    for name in config.tables:
        TABLES[name]
    if device is None:
        from course_lib.device import get_device

        device = str(get_device())
    rows, timings = [], []
    with stopwatch() as elapsed:
        for name in config.tables:
            for row in TABLES[name](config, device, progress):
                timings.append(row.pop("timing"))
                rows.append(row)
    return Result("bench", rows, dataclasses.asdict(config), elapsed(), {"timings": timings})


def tables(result: Result) -> dict[str, "object"]:
    """One DataFrame per measured table, rows and timings joined (the speed table wide, with speed-ups)."""
    import pandas as pd

    df = pd.concat([pd.DataFrame(result.rows), pd.json_normalize(result.details["timings"])], axis=1)
    out = {name: part.dropna(axis=1, how="all").drop(columns="table") for name, part in df.groupby("table", sort=False)}
    if "speed" in out:
        out["speed"] = speedups(out["speed"])
    return out


def speedups(df) -> "object":
    """The speed table wide: ms per iteration of each implementation and course_lib's speed-up over learn2learn."""
    wide = df.pivot_table(index=["algo", "batch", "steps"], columns="impl", values="ms_per_iter")
    mem = df.pivot_table(index=["algo", "batch", "steps"], columns="impl", values="peak_mb")
    for impl in ("course_lib", "course_lib-compiled"):
        if impl in wide and "learn2learn" in wide:
            wide[f"speedup {impl}"] = wide["learn2learn"] / wide[impl]
    wide.columns = [f"ms {c}" if not c.startswith("speedup") else c for c in wide.columns]
    mem.columns = [f"MB {c}" for c in mem.columns]
    return wide.join(mem).reset_index()


def show(result: Result) -> str:
    return "\n\n".join(f"[{name}]\n{df.to_string(index=False, float_format=lambda v: f'{v:.3g}')}"
                       for name, df in tables(result).items())


def main(argv: Sequence[str] | None = None) -> Result:
    """``python -m course_lib.bench [--set tables=meta_batch,processes] [--json FILE] [--device cuda]``."""
    return cli(run, Config, argv, description=__doc__.split("\n")[0], show=show)


if __name__ == "__main__":
    main()
