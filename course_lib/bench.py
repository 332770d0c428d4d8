"""Speed and memory of one meta-iteration: learn2learn vs course_lib (eager and compiled).

Derived in chapter 03, section 7 (the cost of second order) and chapter 04 (Reptile vs MAML).
The task is the MAML paper's sinusoid regression (1-40-40-1 ReLU, K = 10 support and 10 query
points per task). One meta-iteration = sample nothing (batches are pre-drawn), adapt every task of
the meta-batch, compute the meta-gradient, take an Adam step (SGD for Reptile).

Each configuration runs in a fresh subprocess so that its peak memory is its own: on CUDA the
peak memory allocated by torch during the timed iterations; on the CPU the growth of the process's
peak resident set size (RSS) from just before the first iteration, so the compiled rows include
what compilation itself costs. All rows are measured in one run, so their ratios are
comparable even on a shared, noisy machine; absolute milliseconds are not.

Run: ``python -m course_lib.bench [--json FILE] [--quick] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import resource
import sys
import time

IMPLS = ("learn2learn", "course_lib", "course_lib-compiled")
ALGOS = ("maml", "fomaml", "reptile")


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux and bytes on macOS.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _rss_mb()


def _measure(cfg: dict) -> dict:
    """Time one (impl, algo, batch, steps) configuration; runs inside a fresh subprocess."""
    import torch
    from torch import nn

    from course_lib.algorithms import MAML, Reptile
    from course_lib.algorithms.functional import adam
    from course_lib.experiments.sinusoid import make_model
    from course_lib.tasks import sample_sinusoid_tasks

    device = torch.device(cfg["device"])
    if device.type == "cpu":
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    model = make_model().to(device)
    g = torch.Generator().manual_seed(0)
    batches = [sample_sinusoid_tasks(cfg["batch"], 10, 10, generator=g, device=device)[0]
               for _ in range(8)]
    impl, algo, steps, alpha = cfg["impl"], cfg["algo"], cfg["steps"], 0.01

    if impl == "learn2learn":
        import learn2learn as l2l

        meta = l2l.algorithms.MAML(model, lr=alpha, first_order=algo != "maml")
        opt = torch.optim.Adam(meta.parameters(), lr=1e-3) if algo != "reptile" else \
            torch.optim.SGD(meta.parameters(), lr=0.1)
        mse = nn.functional.mse_loss

        def step(b):
            opt.zero_grad()
            if algo == "reptile":
                deltas = [torch.zeros_like(p) for p in meta.parameters()]
                for i in range(b.n_tasks):
                    learner = meta.clone()
                    x = torch.cat([b.x_support[i], b.x_query[i]]); y = torch.cat([b.y_support[i], b.y_query[i]])
                    for _ in range(steps):
                        learner.adapt(mse(learner(x), y))
                    for d, p, q in zip(deltas, meta.parameters(), learner.parameters()):
                        d += (p.detach() - q.detach()) / b.n_tasks
                for p, d in zip(meta.parameters(), deltas):
                    p.grad = d
            else:
                total = 0.0
                for i in range(b.n_tasks):
                    learner = meta.clone()
                    for _ in range(steps):
                        learner.adapt(mse(learner(b.x_support[i]), b.y_support[i]))
                    total = total + mse(learner(b.x_query[i]), b.y_query[i])
                (total / b.n_tasks).backward()
            opt.step()
    else:
        compile = impl == "course_lib-compiled"
        if algo == "reptile":
            learner = Reptile(model, "mse", alpha=alpha, steps=steps, beta=0.1)
            opt = torch.optim.SGD(learner.parameters(), lr=0.1)
        else:
            learner = MAML(model, "mse", alpha=alpha, steps=steps, first_order=algo == "fomaml")
            opt = adam(learner.parameters(), 1e-3)

        def step(b):
            learner.step(b, opt, compile)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rss0 = _current_rss_mb()
    for b in batches[:3]:  # warm-up (and compilation)
        step(b)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n, t0 = 0, time.perf_counter()
    while n < cfg["min_iters"] or (time.perf_counter() - t0 < cfg["min_seconds"] and n < cfg["max_iters"]):
        step(batches[n % len(batches)])
        n += 1
    sync()
    ms = 1e3 * (time.perf_counter() - t0) / n
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else max(_rss_mb() - rss0, 0.0))
    return {"impl": impl, "algo": algo, "batch": cfg["batch"], "steps": steps, "ms_per_iter": round(ms, 4),
            "peak_mb": round(peak, 2), "device": str(device), "iters": n}


def run(batches: tuple[int, ...] = (4, 25, 100), steps: tuple[int, ...] = (1, 5),
        algos: tuple[str, ...] = ALGOS, impls: tuple[str, ...] = IMPLS, device: str | None = None,
        threads: int = 1, min_seconds: float = 1.5, min_iters: int = 5, max_iters: int = 2000,
        progress: bool = True, on_row=None) -> list[dict]:
    """Measure every configuration (each in its own subprocess) and return the rows.

    ``on_row(rows_so_far)`` is called after each configuration (the CLI saves partial results).
    """
    from tqdm.auto import tqdm

    if device is None:
        from course_lib.device import get_device

        device = str(get_device())
    ctx = mp.get_context("spawn")
    configs = [dict(impl=i, algo=a, batch=b, steps=s, device=device, threads=threads, min_seconds=min_seconds,
                    min_iters=min_iters, max_iters=max_iters)
               for a, b, s, i in itertools.product(algos, batches, steps, impls)]
    rows = []
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for row in tqdm(pool.imap(_measure, configs), total=len(configs), desc="bench", disable=not progress):
            rows.append(row)
            if on_row is not None:
                on_row(rows)
    return rows


def speedups(rows: list[dict]):
    """A wide table: ms per iteration of each implementation and course_lib's speed-up over learn2learn."""
    import pandas as pd

    df = pd.DataFrame(rows)
    wide = df.pivot_table(index=["algo", "batch", "steps"], columns="impl", values="ms_per_iter")
    mem = df.pivot_table(index=["algo", "batch", "steps"], columns="impl", values="peak_mb")
    for impl in ("course_lib", "course_lib-compiled"):
        if impl in wide and "learn2learn" in wide:
            wide[f"speedup {impl}"] = wide["learn2learn"] / wide[impl]
    wide.columns = [f"ms {c}" if not c.startswith("speedup") else c for c in wide.columns]
    mem.columns = [f"MB {c}" for c in mem.columns]
    return wide.join(mem).reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="learn2learn vs course_lib: ms per meta-iteration and peak memory")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: the best available)")
    parser.add_argument("--quick", action="store_true", help="only meta-batch 25, one inner step")
    parser.add_argument("--batches", default="4,25,100", help="meta-batch sizes, comma-separated")
    parser.add_argument("--steps", default="1,5", help="inner steps, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per kernel (default 1)")
    args = parser.parse_args(argv)
    ints = lambda text: tuple(int(v) for v in text.split(","))  # noqa: E731
    kw = dict(batches=(25,), steps=(1,)) if args.quick else dict(batches=ints(args.batches), steps=ints(args.steps))

    def save(rows: list[dict]) -> None:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)

    rows = run(device=args.device, threads=args.threads, on_row=save, **kw)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(speedups(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
