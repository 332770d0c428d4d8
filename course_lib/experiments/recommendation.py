"""Chapter 06 experiment: cold-start recommendation of lecturers on InstEval, baselines vs MeLU-style meta-learning.

Derived in chapter 06 (Personalized learning-resource recommendation). Protocol after MeLU (Lee
et al., KDD 2019): every student with 13-100 ratings is a task; 10 random ratings are the query
set 𝒟ᵢ^q; the support set 𝒟ᵢˢ is either all remaining ratings (``k = "all"``, MeLU's setting) or
the first K of them (K = 1, 3, 5, 10; evaluated on the test students with at least 10 non-query
ratings so that every K is scored on the same students). Students are split into train /
validation / test; the validation students choose every hyperparameter (popularity shrinkage, MF
rank and penalties, the meta-training iteration kept by early stopping, the number of inner steps
used at test time for each K). Every meta-learned variant is evaluated the same way: α-steps on the
decision layers and the student offset (``ADAPT``) from the meta-learned θ.

Methods: global mean, popularity (shrunk lecturer mean), biased MF with fold-in of the new student
(ALS), and the MeLU-style model of :mod:`course_lib.models.preference` meta-trained with MAML, first-order
MAML and Reptile. Metrics per test student on the query set: MAE (mean and 95 % CI over students),
RMSE (over all query ratings) and nDCG@3; paired per-student MAE differences against MF fold-in.

Run ``python -m course_lib.experiments.recommendation --json FILE``; the notebook calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from course_lib.algorithms import MAML, Reptile
from course_lib.baselines.matrix_factorization import MatrixFactorization
from course_lib.baselines.popularity import GlobalMean, Popularity
from course_lib.data.insteval import (StudentSplit, StudentTasks, load_insteval, make_tasks, split_students,
                                      student_task_sampler, task_batch)
from course_lib.device import get_device
from course_lib.metrics import mean_ci
from course_lib.models.preference import ADAPT, MeLU
from course_lib.tasks import TaskBatch

__all__ = ["RecConfig", "Data", "prepare_data", "fit_baselines", "baseline_predictions", "train_meta",
           "meta_predictions", "choose_steps", "per_student_scores", "ndcg_at_k_rows", "run", "main",
           "K_SWEEP", "META_VARIANTS"]

K_SWEEP: tuple[int, ...] = (1, 3, 5, 10)
META_VARIANTS: tuple[str, ...] = ("MAML", "FOMAML", "Reptile")
KValue = int | None  # None = the whole support pool ("all")


@dataclass(frozen=True)
class RecConfig:
    """Every setting of the chapter 06 experiment (the defaults are the ones the chapter reports)."""

    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    n_query: int = 10
    k_sweep: tuple[int, ...] = K_SWEEP
    # MeLU-style model and meta-training
    embed_dim: int = 8
    hidden: int = 32
    n_layers: int = 2
    init_from_popularity: bool = True
    meta_batch: int = 32
    iterations: int = 1500
    val_every: int = 250
    beta: float = 3e-3
    weight_decay: float = 0.0
    alpha: float = 0.1
    inner_steps: int = 1
    train_k: str = "random"
    reptile_alpha: float = 0.3
    reptile_steps: int = 3
    reptile_beta: float = 3e-3
    reptile_outer: str = "adam"
    reptile_adapt_all: bool = True
    variants: tuple[str, ...] = META_VARIANTS
    test_steps: tuple[int, ...] = (0, 1, 2, 3, 5, 8)
    # baselines: popularity shrinkage grid and MF (rank, reg, reg_bias) grid, chosen on validation
    shrinkages: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
    mf_grid: tuple[tuple[int, float, float], ...] = field(default_factory=lambda: (
        (0, 10.0, 3.0), (0, 10.0, 5.0), (0, 10.0, 10.0), (2, 10.0, 5.0), (2, 20.0, 5.0), (5, 10.0, 5.0),
        (5, 20.0, 5.0), (10, 20.0, 5.0)))

    def __post_init__(self) -> None:
        if any(k < 1 for k in self.k_sweep):
            raise ValueError(f"every K in k_sweep must be >= 1, got {self.k_sweep}")
        unknown = set(self.variants) - set(META_VARIANTS)
        if unknown:
            raise ValueError(f"unknown meta-learning variants {sorted(unknown)}; choose from {META_VARIANTS}")
        if self.iterations < 1 or self.meta_batch < 1 or self.val_every < 1:
            raise ValueError("iterations, meta_batch and val_every must be >= 1")
        if not self.test_steps or min(self.test_steps) < 0:
            raise ValueError(f"test_steps must be non-empty, non-negative step counts, got {self.test_steps}")


@dataclass
class Data:
    """The ratings table, the split by student, the training ratings and the val/test tasks."""

    ratings: pd.DataFrame
    split: StudentSplit
    train: pd.DataFrame
    val: StudentTasks
    test: StudentTasks
    k_max: int = 10

    def tasks(self, which: str, k: KValue) -> StudentTasks:
        """The val/test tasks scored at ``k``: students with >= max(K sweep) pool ratings, or all for None."""
        if which not in ("val", "test"):
            raise ValueError(f"which must be 'val' or 'test', got {which!r}")
        tasks = self.val if which == "val" else self.test
        return tasks if k is None else tasks.with_pool_at_least(self.k_max)


def prepare_data(cfg: RecConfig = RecConfig()) -> Data:
    """Load InstEval, split students, draw each val/test student's query set and support order."""
    ratings = load_insteval()
    split = split_students(ratings, cfg.fractions, seed=cfg.seed)
    train = ratings[ratings["student"].isin(split.train)]
    return Data(ratings, split, train, make_tasks(ratings, split.val, cfg.n_query, seed=cfg.seed + 1),
                make_tasks(ratings, split.test, cfg.n_query, seed=cfg.seed + 2), k_max=max(cfg.k_sweep))


# ------------------------------------------------------------------------------------ scoring

def ndcg_at_k_rows(y_true: np.ndarray, y_score: np.ndarray, k: int = 3) -> np.ndarray:
    """nDCG@k of every row (one student's query list each) ``[students, n] -> [students]``.

    Same definition as :func:`course_lib.metrics.ndcg_at_k` (scikit-learn's, gain = rating, log2
    discount, tied scores share their gain), vectorised for rows without tied scores.
    """
    from course_lib.metrics import ndcg_at_k

    y_true = np.asarray(y_true, float)
    y_score = np.asarray(y_score, float)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_score must both be [students, n], got {y_true.shape} and {y_score.shape}")
    n = y_true.shape[1]
    k = min(k, n)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-y_score, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(y_true, order, 1) * discount).sum(1)
    ideal = (-np.sort(-y_true, axis=1)[:, :k] * discount).sum(1)
    out = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    srt = np.sort(y_score, axis=1)
    tied = (np.diff(srt, axis=1) == 0).any(1)
    for i in np.nonzero(tied)[0]:
        out[i] = ndcg_at_k(y_true[i], y_score[i], k)
    return out


def per_student_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-student MAE, mean squared error and nDCG@3 of ``[students, n_query]`` predictions (clipped to 1..5)."""
    y_pred = np.clip(np.asarray(y_pred, float), 1.0, 5.0)
    y_true = np.asarray(y_true, float)
    if np.isnan(y_pred).any():
        raise ValueError("predictions contain NaN")
    err = y_pred - y_true
    return {"mae": np.abs(err).mean(1), "mse": (err ** 2).mean(1), "ndcg3": ndcg_at_k_rows(y_true, y_pred, 3)}


def _row(method: str, kind: str, k: KValue, scores: dict[str, np.ndarray]) -> dict:
    m, lo, hi = mean_ci(scores["mae"])
    return {"method": method, "kind": kind, "k": "all" if k is None else int(k), "mae": m, "mae_lo": lo,
            "mae_hi": hi, "rmse": float(np.sqrt(scores["mse"].mean())), "ndcg3": float(scores["ndcg3"].mean()),
            "n_students": int(len(scores["mae"]))}


# ------------------------------------------------------------------------------------ baselines

def baseline_predictions(model, ratings: pd.DataFrame, tasks: StudentTasks, k: KValue) -> np.ndarray:
    """``[students, n_query]`` predictions of a fitted baseline from each student's K-shot support set."""
    lect = ratings["lecturer"].to_numpy()
    r = ratings["rating"].to_numpy()
    return np.stack([model.predict_new(lect[s], r[s], lect[q]) for s, q in zip(tasks.support(k), tasks.query)])


def _y_query(ratings: pd.DataFrame, tasks: StudentTasks) -> np.ndarray:
    r = ratings["rating"].to_numpy()
    return np.stack([r[q] for q in tasks.query])


def _val_mae(model, data: Data, ks: Sequence[KValue]) -> float:
    """Mean validation MAE over the K sweep and "all": the criterion for every choice on validation."""
    total = 0.0
    for k in ks:
        tasks = data.tasks("val", k)
        total += per_student_scores(_y_query(data.ratings, tasks),
                                    baseline_predictions(model, data.ratings, tasks, k))["mae"].mean()
    return total / len(ks)


def fit_baselines(data: Data, cfg: RecConfig = RecConfig()) -> tuple[dict[str, object], dict[str, dict]]:
    """Fit global mean, popularity and MF fold-in on the training students; tune on validation.

    Returns ``(models, chosen)`` where ``chosen`` records the selected hyperparameters and val MAE.
    """
    tr = data.train
    args = (tr["student"].to_numpy(), tr["lecturer"].to_numpy(), tr["rating"].to_numpy())
    n_lect = int(data.ratings["lecturer"].max()) + 1
    ks: list[KValue] = [*cfg.k_sweep, None]
    models: dict[str, object] = {"global mean": GlobalMean().fit(*args)}
    best = min(((_val_mae(Popularity(lam).fit(*args, n_lecturers=n_lect), data, ks), lam)
                for lam in cfg.shrinkages))
    models["popularity"] = Popularity(best[1]).fit(*args, n_lecturers=n_lect)
    chosen = {"popularity": {"shrinkage": best[1], "val_mae": float(best[0])}}
    fits = []
    for rank, reg, reg_bias in cfg.mf_grid:
        mf = MatrixFactorization(rank, reg, reg_bias, seed=cfg.seed).fit(*args, n_lecturers=n_lect)
        fits.append((_val_mae(mf, data, ks), (rank, reg, reg_bias), mf))
    score, (rank, reg, reg_bias), mf = min(fits, key=lambda t: t[0])
    models["MF fold-in"] = mf
    chosen["MF fold-in"] = {"rank": rank, "reg": reg, "reg_bias": reg_bias, "val_mae": float(score)}
    return models, chosen


# ------------------------------------------------------------------------------------ meta-learning

def _make_model(data: Data, cfg: RecConfig, device: torch.device) -> MeLU:
    pop = Popularity(5.0).fit(data.train["student"].to_numpy(), data.train["lecturer"].to_numpy(),
                              data.train["rating"].to_numpy(), n_lecturers=int(data.ratings["lecturer"].max()) + 1)
    return MeLU(cfg.embed_dim, cfg.hidden, cfg.n_layers, mu=pop.mu,
                lecturer_offsets=pop.item_bias if cfg.init_from_popularity else None).to(device)


def _val_criterion(learner: MAML, batches: list[tuple[TaskBatch, np.ndarray]], steps: Sequence[int]) -> float:
    """Mean over the K settings of the best validation MAE over a few inner-step counts."""
    return float(np.mean([min(per_student_scores(y, meta_predictions(learner, b, s))["mae"].mean() for s in steps)
                          for b, y in batches]))


def train_meta(variant: str, data: Data, cfg: RecConfig = RecConfig(), device: torch.device | None = None,
               progress: bool = True) -> tuple[MAML, dict]:
    """Meta-train the MeLU-style model on the training students with ``variant`` (MAML | FOMAML | Reptile).

    MAML and FOMAML adapt only the decision layers and the student offset (``adapt=ADAPT``); the
    embeddings and lecturer offsets get the outer gradient. Reptile has no outer gradient of its own:
    θ moves towards the adapted φ, so every parameter must adapt in its inner loop for the embeddings
    to learn (``adapt=None``; ``cfg.reptile_adapt_all=False`` meta-learns only ``ADAPT`` with Reptile).
    Every ``cfg.val_every`` iterations the validation MAE is measured and the best θ is kept (early
    stopping: the lecturer embeddings start to memorise the training students' ratings).
    Returns a :class:`MAML` wrapper sharing the trained model (adapting ``ADAPT`` with step α, used for
    evaluation of every variant) and the history (training loss, validation MAE, best iteration).
    """
    from tqdm.auto import tqdm

    if variant not in META_VARIANTS:
        raise ValueError(f"variant must be one of {META_VARIANTS}, got {variant!r}")
    device = device or get_device()
    torch.manual_seed(cfg.seed)
    model = _make_model(data, cfg, device)
    sample = student_task_sampler(data.ratings, data.split.train, cfg.meta_batch, cfg.n_query,
                                  k_shot=cfg.train_k if variant != "Reptile" else "all", device=device)
    if variant == "Reptile":
        algo = Reptile(model, "mse", alpha=cfg.reptile_alpha, steps=cfg.reptile_steps, beta=cfg.reptile_beta,
                       adapt=None if cfg.reptile_adapt_all else ADAPT)
        opt = (torch.optim.AdamW(algo.parameters(), lr=cfg.reptile_beta, weight_decay=cfg.weight_decay)
               if cfg.reptile_outer == "adam" else torch.optim.SGD(algo.parameters(), lr=cfg.reptile_beta))
    else:
        algo = MAML(model, "mse", alpha=cfg.alpha, steps=cfg.inner_steps, first_order=variant == "FOMAML",
                    adapt=ADAPT)
        opt = torch.optim.AdamW(algo.parameters(), lr=cfg.beta, weight_decay=cfg.weight_decay)
    # every variant is evaluated the same way: α-steps on ADAPT (decision layers + student offset)
    learner = MAML(model, "mse", alpha=cfg.alpha, steps=cfg.inner_steps, adapt=ADAPT)
    val = [(task_batch(data.ratings, data.tasks("val", k), k, device=device),
            _y_query(data.ratings, data.tasks("val", k))) for k in [*cfg.k_sweep, None]]
    check_steps = sorted({0, cfg.inner_steps, 3 * cfg.inner_steps})
    history: dict[str, list] = {"iteration": [], "loss": [], "val_mae": []}
    snapshot = lambda: {k: v.detach().clone() for k, v in model.state_dict().items()}  # noqa: E731
    best = (_val_criterion(learner, val, check_steps), snapshot(), 0)
    bar = tqdm(total=cfg.iterations, desc=f"MeLU-{variant}", disable=not progress, mininterval=0.5)
    done = 0
    while done < cfg.iterations:
        n = min(cfg.val_every, cfg.iterations - done)
        h = algo.fit(sample, n, seed=cfg.seed + done, progress=False, optimizer=opt, log_every=n)
        done += n
        score = _val_criterion(learner, val, check_steps)
        history["iteration"].append(done)
        history["loss"].append(h["loss"][-1])
        history["val_mae"].append(score)
        if score < best[0]:
            best = (score, snapshot(), done)
        bar.update(n)
        bar.set_postfix(loss=f"{h['loss'][-1]:.3f}", val_mae=f"{score:.4f}", refresh=False)
    bar.close()
    model.load_state_dict(best[1])
    history["best_iteration"] = best[2]
    history["best_val_mae"] = best[0]
    return learner, history


def meta_predictions(learner: MAML, batch: TaskBatch, steps: int) -> np.ndarray:
    """``[students, n_query]`` predictions after ``steps`` inner steps on each student's support set."""
    if steps == 0:
        theta = {k: v.detach() for k, v in learner.theta.items()}
        with torch.no_grad():
            pred = torch.func.functional_call(learner.model, theta, (batch.x_query,))
    else:
        pred = learner.predict_batch(learner.adapt_batch(batch, steps=steps), batch.x_query)
    return pred.detach().cpu().numpy()


def choose_steps(learner: MAML, data: Data, cfg: RecConfig = RecConfig(),
                 device: torch.device | None = None) -> tuple[dict[str, int], dict[str, dict[int, float]]]:
    """For each K (and "all"), the number of test-time inner steps with the lowest validation MAE.

    Returns ``(steps, grid)``: the chosen steps per K and the validation MAE for every candidate.

    Gradient steps on the mean support loss move the student offset by a fixed fraction of the mean
    residual per step, whatever K is; a Bayesian would trust 1 rating less than 10. Choosing the
    number of steps per K on validation students restores that (more data, more steps).
    """
    device = device or get_device()
    steps, grid = {}, {}
    for k in [*cfg.k_sweep, None]:
        tasks = data.tasks("val", k)
        batch = task_batch(data.ratings, tasks, k, device=device)
        y = _y_query(data.ratings, tasks)
        maes = [float(per_student_scores(y, meta_predictions(learner, batch, s))["mae"].mean())
                for s in cfg.test_steps]
        key = "all" if k is None else str(k)
        steps[key] = int(cfg.test_steps[int(np.argmin(maes))])
        grid[key] = dict(zip(cfg.test_steps, maes))
    return steps, grid


# ------------------------------------------------------------------------------------ the study

def run(cfg: RecConfig | None = None, device: torch.device | str | None = None, progress: bool = True,
        keep_models: bool = False) -> dict:
    """The whole chapter 06 study; returns the JSON-ready table (and the fitted models if ``keep_models``).

    Keys: ``wall_s``, ``rows`` (one per method and K), ``paired`` (per-student MAE difference of
    every method minus MF fold-in, with 95 % CI), ``baselines`` (chosen hyperparameters),
    ``steps`` (test-time inner steps per variant and K) with ``val_mae_by_steps``, ``history``
    (meta-training loss), ``config``. On a CPU the work runs single-threaded (restored afterwards):
    the tensors are tiny, and intra-op threads only add synchronisation, which on a busy machine
    can make each step many times slower.
    """
    device = torch.device(device) if device is not None else get_device()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _run(cfg or RecConfig(), device, progress, keep_models)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: RecConfig, device: torch.device, progress: bool, keep_models: bool) -> dict:
    start = time.perf_counter()
    data = prepare_data(cfg)
    baselines, chosen = fit_baselines(data, cfg)
    learners, histories, steps, grids = {}, {}, {}, {}
    for variant in cfg.variants:
        learners[variant], histories[variant] = train_meta(variant, data, cfg, device, progress)
        steps[variant], grids[variant] = choose_steps(learners[variant], data, cfg, device)
    rows, paired = [], []
    for k in [*cfg.k_sweep, None]:
        tasks = data.tasks("test", k)
        y = _y_query(data.ratings, tasks)
        scores = {name: per_student_scores(y, baseline_predictions(m, data.ratings, tasks, k))
                  for name, m in baselines.items()}
        batch = task_batch(data.ratings, tasks, k, device=device)
        for variant, learner in learners.items():
            s = steps[variant]["all" if k is None else str(k)]
            scores[f"MeLU-{variant}"] = per_student_scores(y, meta_predictions(learner, batch, s))
        if "MAML" in learners:
            scores["MeLU-MAML, not adapted"] = per_student_scores(y, meta_predictions(learners["MAML"], batch, 0))
        for name, sc in scores.items():
            rows.append(_row(name, "baseline" if name in baselines else "meta", k, sc))
            if name != "MF fold-in":
                d, lo, hi = mean_ci(sc["mae"] - scores["MF fold-in"]["mae"])
                paired.append({"method": name, "versus": "MF fold-in", "k": "all" if k is None else int(k),
                               "mae_diff": d, "lo": lo, "hi": hi})
    out = {"wall_s": time.perf_counter() - start, "rows": rows, "paired": paired, "baselines": chosen,
           "steps": steps, "val_mae_by_steps": grids, "history": histories, "config": asdict(cfg),
           "device": str(device)}
    if keep_models:
        out["models"] = {"data": data, "baselines": baselines, "learners": learners}
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m course_lib.experiments.recommendation --json FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the result table to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=RecConfig.iterations)
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: best available)")
    parser.add_argument("--variants", nargs="+", default=list(META_VARIANTS), choices=META_VARIANTS)
    parser.add_argument("--quick-baselines", action="store_true",
                        help="a one-point hyperparameter grid for the baselines (smoke tests only)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg = RecConfig(seed=args.seed, iterations=args.iterations, variants=tuple(args.variants))
    if args.quick_baselines:
        cfg = replace(cfg, shrinkages=(2.0,), mf_grid=((0, 10.0, 5.0),), test_steps=(0, 1))
    out = run(cfg, device=args.device and get_device(args.device), progress=not args.no_progress)
    table = pd.DataFrame(out["rows"])
    with pd.option_context("display.width", 140, "display.max_rows", 100):
        print(table.round(4).to_string(index=False))
    print(f"wall time {out['wall_s']:.1f} s (MAE: mean absolute error on the 10 query ratings per student)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
