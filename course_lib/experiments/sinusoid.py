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

It follows the study contract (`course_lib.experiments.common`): ``run(Config(...)) -> Result``;
``details["theta"]`` holds each trained network's parameters (`models` rebuilds the networks) and
the training times are in ``details["timings"]``. With ``fused=True`` (the default) MAML and FOMAML
train with `course_lib.algorithms.fused.FusedMAML` (meta-gradient and Adam in one compiled graph,
chapter 08); ``fused=False`` uses `MAML.fit`.

Run: ``python -m course_lib.experiments.sinusoid [--set iterations=70000] [--set methods=maml,pretrained]
[--json FILE]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from course_lib.algorithms import MAML, Reptile
from course_lib.algorithms.functional import Params, adam, fit_loop
from course_lib.algorithms.fused import FusedMAML
from course_lib.device import cpu_threads, get_device
from course_lib.experiments.common import Registry, Result, cli, stopwatch
from course_lib.models.regressor import mlp_regressor
from course_lib.tasks import TaskBatch, sample_sinusoid_tasks

PAPER = {  # Finn et al. 2017, appendix table: 5-shot MSE after 1 / 5 / 10 gradient steps.
    ("maml", 5, 1): 0.67, ("maml", 5, 5): 0.38, ("maml", 5, 10): 0.35,
    ("pretrained", 5, 1): 2.41, ("pretrained", 5, 5): 2.23, ("pretrained", 5, 10): 2.19,
}
DIVERGED = 100.0  # an MSE above this (or NaN) counts as diverged; predicting 0 everywhere gives ~4.25
METHODS = ("maml", "fomaml", "reptile", "pretrained")


def make_model() -> nn.Module:
    """The paper's regressor: 1-40-40-1 with ReLU (`course_lib.models.regressor.mlp_regressor`)."""
    return mlp_regressor((40, 40))


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


@dataclasses.dataclass(frozen=True)
class Config:
    """The paper's setup by default (70,000 iterations, meta-batch 25, K = 10, 600 test tasks)."""

    iterations: int = 70_000
    meta_batch: int = 25
    k_train: int = 10
    ks: tuple[int, ...] = (5, 10, 20)
    steps: tuple[int, ...] = (1, 5, 10)
    methods: tuple[str, ...] = METHODS
    n_test: int = 600
    n_query_test: int = 100
    alpha: float = 0.01
    beta: float = 1e-3
    reptile_alpha: float = 0.02
    reptile_steps: int = 5
    reptile_beta: float = 0.1
    seed: int = 0
    compile: bool = True
    fused: bool = True               # MAML/FOMAML: FusedMAML (one compiled graph with Adam) instead of MAML.fit
    threads: int = 1                 # CPU threads per kernel (0 = leave torch's setting)


Trainer = Callable[[nn.Module, Config, int, torch.device, bool], tuple[dict, float]]
TRAINERS: Registry[Trainer] = Registry("method")
CHUNK = 500


def _sampler(config: Config, device: torch.device) -> Callable[[torch.Generator], TaskBatch]:
    return chunked_sampler(config.meta_batch, config.k_train, config.k_train, device, chunk=CHUNK)


def _maml(first_order: bool) -> Trainer:
    def train(model: nn.Module, config: Config, seed: int, device: torch.device, progress: bool) -> tuple[dict, float]:
        if config.fused:
            learner = FusedMAML(model, "mse", alpha=config.alpha, steps=1, first_order=first_order, beta=config.beta,
                                compile=config.compile)
            chunk = lambda g: sample_sinusoid_tasks(CHUNK * config.meta_batch, config.k_train, config.k_train,  # noqa: E731
                                                    generator=g, device=device)[0]
            return learner.fit(chunk, config.iterations, chunk=CHUNK, seed=seed, progress=progress), config.alpha
        learner = MAML(model, "mse", alpha=config.alpha, steps=1, first_order=first_order)
        return learner.fit(_sampler(config, device), config.iterations, beta=config.beta, seed=seed,
                           compile=config.compile, progress=progress), config.alpha
    return train


TRAINERS.register("maml")(_maml(first_order=False))
TRAINERS.register("fomaml")(_maml(first_order=True))


def _reptile(anneal: bool) -> Trainer:
    def train(model: nn.Module, config: Config, seed: int, device: torch.device, progress: bool) -> tuple[dict, float]:
        learner = Reptile(model, "mse", alpha=config.reptile_alpha, steps=config.reptile_steps,
                          beta=config.reptile_beta)
        return learner.fit(_sampler(config, device), config.iterations, seed=seed, compile=config.compile,
                           progress=progress, anneal=anneal), config.reptile_alpha
    return train


TRAINERS.register("reptile")(_reptile(anneal=False))
# Nichol et al. 2018's schedule: the outer step decays linearly from reptile_beta to 0 (chapter 04, section 4).
TRAINERS.register("reptile_annealed")(_reptile(anneal=True))


@TRAINERS.register("pretrained")
def _pretrained(model: nn.Module, config: Config, seed: int, device: torch.device, progress: bool) -> tuple[dict, float]:
    history = train_pretrained(model, _sampler(config, device), config.iterations, config.beta, seed, progress)
    val, _, _ = sample_sinusoid_tasks(200, max(config.ks), config.n_query_test,
                                      generator=torch.Generator().manual_seed(config.seed + 7), device=device)
    return history, tune_step_size(model, val, max(config.steps))


def _validate(config: Config) -> None:
    TRAINERS.check(config.methods)
    if config.iterations < 1 or config.meta_batch < 1 or config.n_test < 1:
        raise ValueError("iterations, meta_batch and n_test must be >= 1")
    if not config.steps or max(config.steps) < 1:
        raise ValueError("steps must contain at least one positive number of fine-tuning steps")


def _evaluate(models: dict[str, nn.Module], alphas: dict[str, float], config: Config,
              device: torch.device) -> list[dict]:
    """Fine-tune every trained model on ``n_test`` new tasks per K; one row per (K, method, steps)."""
    rows = []
    for k in config.ks:
        test, _, _ = sample_sinusoid_tasks(config.n_test, k, config.n_query_test,
                                           generator=torch.Generator().manual_seed(config.seed + 1000 + k),
                                           device=device)
        for method, model in models.items():
            curve = finetune_curve(model, dict(model.named_parameters()), test, alphas[method], max(config.steps))
            for r in summarise(curve.cpu(), config.steps):
                rows.append({"method": method, "k": k, **r, "alpha": alphas[method],
                             "paper": PAPER.get((method, k, r["steps"]))})
    return rows


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None) -> Result:
    """Meta-train every method and evaluate it on ``config.n_test`` new sinusoid tasks for each K.

    Rows: ``{"method", "k", "steps", "mse_median", "mse_mean", "n_diverged", "alpha", "paper"}``.
    Details: ``history`` (loss per 100 iterations), ``theta`` (trained parameters; `models` rebuilds
    the networks), ``device``, ``timings`` ({"train_s": {method: seconds}}).
    """
    _validate(config)
    device = torch.device(device) if device is not None else get_device()
    threads = config.threads if device.type == "cpu" and config.threads > 0 else None
    train_s, models, alphas, histories = {}, {}, {}, {}
    with stopwatch() as wall, cpu_threads(threads):
        for i, method in enumerate(config.methods):
            torch.manual_seed(config.seed + i)
            models[method] = make_model().to(device)
            with stopwatch() as elapsed:
                histories[method], alphas[method] = TRAINERS[method](models[method], config, config.seed + 100 + i,
                                                                     device, progress)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            train_s[method] = elapsed()
        rows = _evaluate(models, alphas, config, device)
    theta = {m: {k: v.detach().cpu() for k, v in model.state_dict().items()} for m, model in models.items()}
    return Result("sinusoid", rows, dataclasses.asdict(config), wall(),
                  {"history": histories, "theta": theta, "device": str(device), "timings": {"train_s": train_s}})


def models(result: Result) -> dict[str, nn.Module]:
    """The trained networks of a `run` result (from ``details["theta"]``, also after a JSON round trip)."""
    out = {}
    for method, state in result.details["theta"].items():
        model = make_model()
        model.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in state.items()})
        out[method] = model
    return out


def table(result: Result):
    """The rows as a DataFrame, with mean / paper beside the paper's figure (the paper reports means)."""
    df = result.table()
    df["ratio_to_paper"] = df["mse_mean"] / df["paper"]
    return df


def show(result: Result) -> str:
    text = table(result).drop(columns=["alpha"]).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    train_s = result.details["timings"]["train_s"]
    n = result.config["iterations"]
    return text + "\n" + "\n".join(f"{m} meta-training: {s:.1f} s for {n} iterations ({1e3 * s / n:.2f} ms/iteration)"
                                     for m, s in train_s.items())


def main(argv: Sequence[str] | None = None) -> Result:
    """``python -m course_lib.experiments.sinusoid [--set name=value ...] [--json FILE]``."""
    return cli(run, Config, argv, description=__doc__.split("\n")[0], show=show)


if __name__ == "__main__":
    main()
