"""Replication of the MAML paper's sinusoid regression study (Finn, Abbeel & Levine 2017, appendix).

Derived in chapter 03 (MAML from first principles), section 5; FOMAML and Reptile rows are used in
chapter 04. Setup of the paper: amplitude A ~ U[0.1, 5], phase b ~ U[0, π], x ~ U[-5, 5]; a
1-40-40-1 ReLU network; one inner step with α = 0.01 on K = 10 points; Adam with β = 1e-3;
meta-batch 25; 70,000 meta-iterations. Evaluation: 600 new tasks, fine-tune on K ∈ {5, 10, 20}
points (the same K points at every step) and report the query MSE after 1, 5 and 10 steps.

The "pretrained" baseline is trained to regress random sinusoids (no adaptation in its objective)
and fine-tuned with a step size tuned on validation tasks, as in the paper. Reported per row: the
median MSE over test tasks and the mean over the tasks that did not diverge (MSE finite and below
``DIVERGED``).

Run: ``python -m course_lib.experiments.sinusoid [--iterations 70000] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from course_lib.algorithms import MAML, Reptile
from course_lib.algorithms.functional import Params, adam, fit_loop
from course_lib.device import cpu_threads, get_device
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

PAPER = {  # Finn et al. 2017, appendix table: 5-shot MSE after 1 / 5 / 10 gradient steps.
    ("maml", 5, 1): 0.67, ("maml", 5, 5): 0.38, ("maml", 5, 10): 0.35,
    ("pretrained", 5, 1): 2.41, ("pretrained", 5, 5): 2.23, ("pretrained", 5, 10): 2.19,
}
DIVERGED = 100.0  # an MSE above this (or NaN) counts as diverged; predicting 0 everywhere gives ~4.25
METHODS = ("maml", "fomaml", "reptile", "pretrained")


def make_model() -> nn.Module:
    """The paper's regressor: 1-40-40-1 with ReLU."""
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))


def chunked_sampler(meta_batch: int, k_shot: int, n_query: int, device: torch.device,
                    chunk: int = 500) -> Callable[[torch.Generator], TaskBatch]:
    """A ``sample(generator) -> TaskBatch`` that draws ``chunk`` meta-batches at a time.

    One large draw is much cheaper than thousands of small ones; the stream of tasks is the same
    distribution as `sample_sinusoid_tasks`.
    """
    buffer: list[TaskBatch] = []

    def sample(g: torch.Generator) -> TaskBatch:
        if not buffer:
            big, _, _ = sample_sinusoid_tasks(chunk * meta_batch, k_shot, n_query, generator=g, device=device)
            for i in range(chunk):
                s = slice(i * meta_batch, (i + 1) * meta_batch)
                buffer.append(TaskBatch(big.x_support[s], big.y_support[s], big.x_query[s], big.y_query[s]))
            buffer.reverse()
        return buffer.pop()

    return sample


def finetune_curve(model: nn.Module, theta: Params, batch: TaskBatch, alpha: float,
                   max_steps: int) -> Tensor:
    """Query MSE of every task after 0..max_steps SGD steps on its support set: ``[tasks, steps+1]``.

    The same K support points are reused at every step, as in the paper's evaluation.
    """
    theta = {k: v.detach() for k, v in theta.items()}

    def mse(p: Params, x: Tensor, y: Tensor) -> Tensor:
        return (functional_call(model, p, (x,)) - y).pow(2).mean()

    def one(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        p, out = theta, [mse(theta, xq, yq)]
        for _ in range(max_steps):
            g = grad(mse)(p, xs, ys)
            p = {k: p[k] - alpha * g[k] for k in p}
            out.append(mse(p, xq, yq))
        return torch.stack(out)

    with torch.no_grad():
        return vmap(one)(batch.x_support, batch.y_support, batch.x_query, batch.y_query)


def summarise(curve: Tensor, steps: tuple[int, ...]) -> list[dict]:
    """Median and non-diverged mean of a ``[tasks, steps+1]`` MSE curve at the requested steps."""
    rows = []
    for s in steps:
        v = curve[:, s]
        ok = torch.isfinite(v) & (v < DIVERGED)
        rows.append({"steps": s, "mse_median": float(v.nanmedian()),
                     "mse_mean": float(v[ok].mean()) if ok.any() else math.nan,
                     "n_diverged": int((~ok).sum())})
    return rows


def train_pretrained(model: nn.Module, sample: Callable[[torch.Generator], TaskBatch], iterations: int,
                     beta: float, seed: int, progress: bool) -> dict:
    """The paper's baseline: regress random sinusoids with no adaptation in the objective."""
    opt = adam(list(model.parameters()), beta)

    def step(b: TaskBatch) -> Tensor:
        opt.zero_grad(set_to_none=True)
        x = torch.cat([b.x_support, b.x_query], 1)
        y = torch.cat([b.y_support, b.y_query], 1)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    return fit_loop(step, sample, iterations, seed, progress, desc="pretrained")


def tune_step_size(model: nn.Module, batch: TaskBatch, max_steps: int,
                   grid: tuple[float, ...] = (0.001, 0.003, 0.01, 0.02, 0.03, 0.1, 0.3)) -> float:
    """The fine-tuning step size with the lowest mean validation MSE after ``max_steps`` steps.

    The mean (the statistic the paper reports), so a step size that makes any task diverge loses.
    """
    theta = dict(model.named_parameters())
    scores = {}
    for a in grid:
        final = finetune_curve(model, theta, batch, a, max_steps)[:, -1]
        scores[a] = float(final.mean()) if torch.isfinite(final).all() else math.inf
    return min(scores, key=scores.get)


def run(iterations: int = 70_000, meta_batch: int = 25, k_train: int = 10, ks: tuple[int, ...] = (5, 10, 20),
        steps: tuple[int, ...] = (1, 5, 10), methods: tuple[str, ...] = METHODS, n_test: int = 600,
        n_query_test: int = 100, alpha: float = 0.01, beta: float = 1e-3, reptile_alpha: float = 0.02,
        reptile_steps: int = 5, reptile_beta: float = 0.1, seed: int = 0, compile: bool = True,
        device: torch.device | str | None = None, threads: int | None = 1, progress: bool = True) -> dict:
    """Meta-train every method and evaluate it on ``n_test`` new sinusoid tasks for each K.

    Returns ``{"train_s", "wall_s", "train_s_by_method", "rows": [{"method", "k", "steps",
    "mse_median", "mse_mean", "n_diverged", "paper"}], "config", "models"}`` where ``train_s`` is
    the MAML meta-training time and ``models`` holds the trained networks (for the notebook).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    if iterations < 1 or meta_batch < 1 or n_test < 1:
        raise ValueError("iterations, meta_batch and n_test must be >= 1")
    if max(steps) < 1:
        raise ValueError("steps must contain at least one positive number of fine-tuning steps")
    device = torch.device(device) if device is not None else get_device()
    threads = threads if device.type == "cpu" else None
    t_wall = time.perf_counter()
    train_s: dict[str, float] = {}
    models: dict[str, nn.Module] = {}
    eval_alpha: dict[str, float] = {}
    histories: dict[str, dict] = {}
    with cpu_threads(threads):
        for i, method in enumerate(methods):
            torch.manual_seed(seed + i)
            model = make_model().to(device)
            sample = chunked_sampler(meta_batch, k_train, k_train, device)
            t0 = time.perf_counter()
            if method in ("maml", "fomaml"):
                learner = MAML(model, "mse", alpha=alpha, steps=1, first_order=method == "fomaml")
                histories[method] = learner.fit(sample, iterations, beta=beta, seed=seed + 100 + i,
                                                compile=compile, progress=progress)
                eval_alpha[method] = alpha
            elif method == "reptile":
                learner = Reptile(model, "mse", alpha=reptile_alpha, steps=reptile_steps, beta=reptile_beta)
                histories[method] = learner.fit(sample, iterations, seed=seed + 100 + i, compile=compile,
                                                progress=progress)
                eval_alpha[method] = reptile_alpha
            else:
                histories[method] = train_pretrained(model, sample, iterations, beta, seed + 100 + i, progress)
                val, _, _ = sample_sinusoid_tasks(200, max(ks), n_query_test,
                                                  generator=torch.Generator().manual_seed(seed + 7), device=device)
                eval_alpha[method] = tune_step_size(model, val, max(steps))
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_s[method] = time.perf_counter() - t0
            models[method] = model
        rows = []
        for k in ks:
            test, _, _ = sample_sinusoid_tasks(n_test, k, n_query_test,
                                               generator=torch.Generator().manual_seed(seed + 1000 + k),
                                               device=device)
            for method, model in models.items():
                curve = finetune_curve(model, dict(model.named_parameters()), test, eval_alpha[method], max(steps))
                for r in summarise(curve.cpu(), steps):
                    rows.append({"method": method, "k": k, **r, "alpha": eval_alpha[method],
                                 "paper": PAPER.get((method, k, r["steps"]))})
    return {"train_s": train_s.get("maml", math.nan), "train_s_by_method": train_s,
            "wall_s": time.perf_counter() - t_wall, "device": str(device), "rows": rows, "history": histories,
            "config": {"iterations": iterations, "meta_batch": meta_batch, "k_train": k_train,
                       "alpha": alpha, "beta": beta, "n_test": n_test, "seed": seed, "compile": compile},
            "models": models}


def table(result: dict):
    """The rows of `run` as a pandas DataFrame, with the paper's figure and mean / paper beside it."""
    import pandas as pd

    df = pd.DataFrame(result["rows"])
    df["ratio_to_paper"] = df["mse_mean"] / df["paper"]  # the paper reports means over test tasks
    return df


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=70_000)
    parser.add_argument("--meta-batch", type=int, default=25)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    res = run(iterations=args.iterations, meta_batch=args.meta_batch, methods=tuple(args.methods.split(",")),
              seed=args.seed, compile=not args.no_compile, device=args.device)
    res.pop("models")
    import pandas as pd

    with pd.option_context("display.width", 140, "display.max_rows", 200):
        print(table(res).drop(columns=["alpha"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"MAML meta-training: {res['train_s']:.1f} s for {args.iterations} iterations "
          f"({1e3 * res['train_s'] / args.iterations:.2f} ms/iteration); total wall time {res['wall_s']:.1f} s "
          f"on {res['device']}")
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
