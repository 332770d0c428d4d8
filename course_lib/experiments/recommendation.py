"""Chapter 06 study: cold-start recommendation of lecturers on InstEval, baselines vs MeLU-style meta-learning.

Derived in chapter 06. Protocol after MeLU (Lee et al., KDD 2019; :func:`course_lib.data.insteval.prepare_tasks`):
every student with 13-100 ratings is a task; 10 random ratings are the query set 𝒟ᵢ^q; the support
set 𝒟ᵢˢ is all remaining ratings (K = "all", MeLU's setting) or the first K of them (K = 1, 3, 5, 10;
scored on the test students with >= 10 non-query ratings, the same students for every K). The
validation students choose every hyperparameter (baseline penalties, the early-stopping iteration,
the test-time inner steps per K).

Methods (:data:`METHODS`): global mean, popularity (shrunk lecturer mean), biased MF with fold-in (ALS),
a linear mixed model on the covariates the network sees (:mod:`course_lib.baselines.mixed_model`), and
the MeLU-style model (:mod:`course_lib.models.preference`) meta-trained with MAML, FOMAML and Reptile,
evaluated with α-steps on ``ADAPT`` (``ablation=True``: also MeLU-MAML without covariates). Scores:
MAE per student (mean, 95 % CI), RMSE, R², nDCG@3; paired per-student MAE differences against
popularity, MF fold-in and the mixed model with bootstrap CIs over students.

Run ``python -m course_lib.experiments.recommendation --json FILE [--set iterations=300]``; the notebook
calls :func:`run_keeping_models`, the CLI :func:`run`: the same numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
import torch

from course_lib.baselines.matrix_factorization import MatrixFactorization
from course_lib.baselines.mixed_model import CovariateMixedModel
from course_lib.baselines.popularity import GlobalMean, Popularity
from course_lib.data.insteval import (CARDINALITY, FEATURES, ColdStartTasks, StudentTasks, predict_students,
                                      prepare_tasks, query_ratings, task_batch)
from course_lib.device import cpu_threads, get_device
from course_lib.experiments import common
from course_lib.metrics import mean_ci, paired_differences, r_squared
from course_lib.models.preference import (META_VARIANTS, MeLUTraining, Validation, choose_steps, meta_train,
                                          predictions, rating_scores)

__all__ = ["Config", "Fitted", "METHODS", "K_SHOTS", "run", "run_keeping_models", "fit_methods", "score",
           "validation_batches", "main"]

K_SHOTS: tuple[int, ...] = (1, 3, 5, 10)
REFERENCE = "MF fold-in"
MIXED = "mixed model + covariates"
ABLATION = "MeLU-MAML, lecturer only"
REFERENCES = ("popularity", REFERENCE, MIXED)  # the paired MAE differences are against these methods
Predict = Callable[[StudentTasks, "int | None"], np.ndarray]  # (tasks, k_shot) -> [students, n_query]


@dataclass(frozen=True)
class Config(MeLUTraining):
    """Every setting of the chapter 06 study (defaults: what the chapter reports).

    MeLU settings come from :class:`MeLUTraining`. The MF grid is the points (``mf_ranks[i]``, ``mf_regs[i]``,
    ``mf_reg_biases[i]``), chosen on validation, the mixed model's likewise; ``ablation``: also meta-train
    MeLU-MAML on the lecturer code alone (what do the covariates add to the meta-learner?).
    """

    seed: int = 0
    fractions: tuple[float, ...] = (0.7, 0.1, 0.2)
    n_query: int = 10
    k_shots: tuple[int, ...] = K_SHOTS
    variants: tuple[str, ...] = META_VARIANTS
    test_steps: tuple[int, ...] = (0, 1, 2, 3, 5, 8)
    shrinkages: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
    mf_ranks: tuple[int, ...] = (0, 0, 0, 2, 2, 5, 5, 10)
    mf_regs: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0, 20.0, 10.0, 20.0, 20.0)
    mf_reg_biases: tuple[float, ...] = (3.0, 5.0, 10.0, 5.0, 5.0, 5.0, 5.0, 5.0)
    mixed_reg_students: tuple[float, ...] = (5.0, 5.0, 10.0, 5.0)
    mixed_reg_lecturers: tuple[float, ...] = (5.0, 5.0, 5.0, 10.0)
    mixed_reg_covariates: tuple[float, ...] = (10.0, 50.0, 10.0, 10.0)
    ablation: bool = False
    n_boot: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.k_shots or any(k_shot < 1 for k_shot in self.k_shots):
            raise ValueError(f"every K in k_shots must be >= 1, got {self.k_shots}")
        unknown = set(self.variants) - set(META_VARIANTS)
        if unknown:
            raise ValueError(f"unknown meta-learning variants {sorted(unknown)}; choose from {META_VARIANTS}")
        if not self.test_steps or min(self.test_steps) < 0:
            raise ValueError(f"test_steps must be non-empty, non-negative step counts, got {self.test_steps}")
        grids = {"mf_ranks, mf_regs, mf_reg_biases": (self.mf_ranks, self.mf_regs, self.mf_reg_biases),
                 "mixed_reg_students, _lecturers, _covariates": (self.mixed_reg_students, self.mixed_reg_lecturers,
                                                                  self.mixed_reg_covariates)}
        for names, grid in grids.items():
            if not self.shrinkages or len({len(g) for g in grid}) != 1 or not grid[0]:
                raise ValueError(f"shrinkages must be non-empty, and {names} non-empty and of equal length (one "
                                 f"grid point each), got lengths {[len(g) for g in grid]}")

    def settings(self) -> list[int | None]:
        """The K settings scored: the sweep, then None for "all"."""
        return [*self.k_shots, None]

    def methods(self) -> tuple[str, ...]:
        """The registered methods this config runs, in table order."""
        return ("global mean", "popularity", REFERENCE, MIXED, *(f"MeLU-{v}" for v in self.variants),
                *((ABLATION,) if self.ablation else ()))


def _key(k_shot: int | None) -> str:
    return "all" if k_shot is None else str(k_shot)


@dataclass
class Fitted:
    """A method fitted on the training students: ``predict(tasks, k_shot) -> [students, n_query]``.

    ``kind``: "baseline" or "meta"; ``info``: what validation chose (JSON-able); ``model``: the fitted model;
    ``also``: extra rows from the same fit (e.g. MeLU-MAML before adaptation).
    """

    predict: Predict
    kind: str
    model: object
    info: dict = field(default_factory=dict)
    also: dict[str, Predict] = field(default_factory=dict)


Method = Callable[[ColdStartTasks, Config, torch.device, bool], Fitted]
METHODS: common.Registry[Method] = common.Registry("recommendation method")


# ------------------------------------------------------------------------------------ baselines

def _validation_mae(model, data: ColdStartTasks, cfg: Config) -> float:
    """Mean validation MAE over the K sweep and "all": the criterion for every baseline choice."""
    total = 0.0
    for k_shot in cfg.settings():
        tasks = data.tasks("validation", k_shot)
        pred = predict_students(model, data.ratings, tasks, k_shot)
        total += rating_scores(query_ratings(data.ratings, tasks), pred)["mae"].mean()
    return total / len(cfg.settings())


def _baseline(model, data: ColdStartTasks, info: dict | None = None) -> Fitted:
    return Fitted(partial(predict_students, model, data.ratings), "baseline", model, info or {})


def _best(candidates: Sequence[tuple[dict, object]], data: ColdStartTasks, cfg: Config) -> Fitted:
    """The fitted candidate (hyperparameters, model) with the lowest validation MAE (first on ties)."""
    scores = [_validation_mae(model, data, cfg) for _, model in candidates]
    best = int(np.argmin(scores))
    hyper, model = candidates[best]
    return _baseline(model, data, {**hyper, "validation_mae": float(scores[best])})


@METHODS.register("global mean")
def _global_mean(data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool) -> Fitted:
    return _baseline(GlobalMean().fit(*data.train_triplets()), data)


@METHODS.register("popularity")
def _popularity(data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool) -> Fitted:
    n_lecturers = CARDINALITY["lecturer"]
    return _best([({"shrinkage": lam}, Popularity(lam).fit(*data.train_triplets(), n_lecturers=n_lecturers))
                  for lam in cfg.shrinkages], data, cfg)


@METHODS.register(REFERENCE)
def _mf_fold_in(data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool) -> Fitted:
    grid = zip(cfg.mf_ranks, cfg.mf_regs, cfg.mf_reg_biases)
    return _best([({"rank": rank, "reg": reg, "reg_bias": reg_bias},
                   MatrixFactorization(rank, reg, reg_bias, seed=cfg.seed).fit(
                       *data.train_triplets(), n_lecturers=CARDINALITY["lecturer"]))
                  for rank, reg, reg_bias in grid], data, cfg)


@METHODS.register(MIXED)
def _mixed_model(data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool) -> Fitted:
    x, (s, _, r) = data.train[list(FEATURES)].to_numpy(np.int64), data.train_triplets()
    grid = zip(cfg.mixed_reg_students, cfg.mixed_reg_lecturers, cfg.mixed_reg_covariates)
    fitted = _best([({"reg_student": lu, "reg_lecturer": lb, "reg_covariate": lc},
                     CovariateMixedModel(lu, lb, lc).fit(x, r, s)) for lu, lb, lc in grid], data, cfg)
    fitted.info["variance_shares"] = fitted.model.variance_shares  # share of Var(rating) per fitted component
    return fitted


# ------------------------------------------------------------------------------------ meta-learning

def validation_batches(data: ColdStartTasks, cfg: Config, device: torch.device) -> Validation:
    """The validation tasks of every K setting as padded batches with their true query ratings."""
    tasks = {_key(k_shot): (k_shot, data.tasks("validation", k_shot)) for k_shot in cfg.settings()}
    return {key: (task_batch(data.ratings, t, k_shot, device=device), query_ratings(data.ratings, t))
            for key, (k_shot, t) in tasks.items()}


def _melu(variant: str, data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool) -> Fitted:
    """Meta-train MeLU with ``variant``, then choose the test-time inner steps per K on validation."""
    validation = validation_batches(data, cfg, device)
    learner, history = meta_train(variant, data.ratings, data.split.train, validation, cfg, n_query=cfg.n_query,
                                  seed=cfg.seed, device=device, progress=progress)
    steps, grid = choose_steps(learner, validation, cfg.test_steps)

    def predict(tasks: StudentTasks, k_shot: int | None, steps_for: dict[str, int] = steps) -> np.ndarray:
        return predictions(learner, task_batch(data.ratings, tasks, k_shot, device=device), steps_for[_key(k_shot)])

    also = {}  # θ itself: what meta-learning gives a new student before any adaptation
    if variant == "MAML" and cfg.features == FEATURES:
        also["MeLU-MAML, not adapted"] = partial(predict, steps_for=dict.fromkeys(steps, 0))
    info = {"history": history, "steps": steps, "validation_mae_by_steps": grid}
    return Fitted(predict, "meta", learner, info, also)


for _variant in META_VARIANTS:
    METHODS.register(f"MeLU-{_variant}")(partial(_melu, _variant))


METHODS.register(ABLATION)(lambda data, cfg, device, progress:  # MeLU-MAML without the covariates
                           _melu("MAML", data, replace(cfg, features=("lecturer",)), device, progress))


# ------------------------------------------------------------------------------------ the study

def fit_methods(data: ColdStartTasks, cfg: Config, device: torch.device, progress: bool = True,
                timings: dict | None = None) -> dict[str, Fitted]:
    """Fit every method of ``cfg`` on the training students (``timings`` collects seconds per method)."""
    from tqdm.auto import tqdm

    fitted = {}
    for name in tqdm(METHODS.check(cfg.methods()), desc="recommendation: fit each method", disable=not progress):
        with common.stopwatch() as elapsed:
            fitted[name] = METHODS[name](data, cfg, device, progress)
        if timings is not None:
            timings[name] = elapsed()
    return fitted


def _row(method: str, kind: str, k_shot: int | None, y: np.ndarray, pred: np.ndarray) -> tuple[dict, np.ndarray]:
    """One table row and the per-student MAE ``[students]`` (for the paired differences)."""
    scores = rating_scores(y, pred)
    m, lo, hi = mean_ci(scores["mae"])
    return {"method": method, "kind": kind, "k_shot": "all" if k_shot is None else int(k_shot), "mae": m,
            "mae_lo": lo, "mae_hi": hi, "rmse": float(np.sqrt(scores["mse"].mean())),
            "r2": r_squared(y, np.clip(pred, 1.0, 5.0)),
            "ndcg3": float(scores["ndcg3"].mean()), "n_students": int(len(scores["mae"]))}, scores["mae"]


def score(data: ColdStartTasks, fitted: dict[str, Fitted], cfg: Config, *, progress: bool = False
          ) -> tuple[list[dict], list[dict]]:
    """Score every fitted method on the test students for every K: ``(rows, paired)``.

    ``paired``: per-student MAE difference of each method minus each of :data:`REFERENCES`, mean and
    95 % percentile bootstrap CI over test students (the same resamples for every pair). ``progress``
    shows a bar over the K settings.
    """
    from tqdm.auto import tqdm

    rows, paired = [], []
    for k_shot in tqdm(cfg.settings(), desc="recommendation: score each K (bootstrap CIs)", disable=not progress):
        tasks = data.tasks("test", k_shot)
        y = query_ratings(data.ratings, tasks)
        predictors = [(name, f.kind, f.predict) for name, f in fitted.items()]
        predictors += [(name, f.kind, p) for f in fitted.values() for name, p in f.also.items()]
        scored = {name: _row(name, kind, k_shot, y, predict(tasks, k_shot)) for name, kind, predict in predictors}
        rows += [row for row, _ in scored.values()]
        paired += [{"k_shot": rows[-1]["k_shot"], "mae_diff": d.pop("diff"), **d} for d in paired_differences(
            {name: mae for name, (_, mae) in scored.items()}, REFERENCES, cfg.n_boot, seed=cfg.seed)]
    return rows, paired


def run_keeping_models(config: Config | None = None, *, progress: bool = True, device: torch.device | str | None = None
                       ) -> tuple[common.Result, ColdStartTasks, dict[str, Fitted]]:
    """:func:`run`, also returning the prepared tasks and the fitted methods (for the notebook's figures).

    On a CPU the work runs single-threaded (restored afterwards): the tensors are tiny, and
    intra-op threads only add synchronisation, which on a busy machine makes each step slower.
    """
    cfg = config or Config()
    device = torch.device(device) if isinstance(device, torch.device) else get_device(device)
    timings: dict[str, float] = {}
    with common.stopwatch() as elapsed, cpu_threads(1 if device.type == "cpu" else None):
        data = prepare_tasks(cfg.fractions, cfg.n_query, max(cfg.k_shots), seed=cfg.seed)
        fitted = fit_methods(data, cfg, device, progress, timings)
        rows, paired = score(data, fitted, cfg, progress=progress)
        wall_s = elapsed()
    meta = {name.removeprefix("MeLU-"): f.info for name, f in fitted.items() if f.kind == "meta"}
    details = {"paired": paired, "device": str(device), "timings": timings,
               "baselines": {name: f.info for name, f in fitted.items() if f.kind == "baseline" and f.info},
               **{part: {v: info[part] for v, info in meta.items()}
                  for part in ("history", "steps", "validation_mae_by_steps")}}
    return common.Result("recommendation", rows, asdict(cfg), wall_s, details), data, fitted


def run(config: Config | None = None, *, progress: bool = True, device: torch.device | str | None = None
        ) -> common.Result:
    """The whole chapter 06 study: ``rows`` (one per method and K) and ``details`` (paired
    differences, chosen hyperparameters, test-time steps, meta-training histories, timings)."""
    return run_keeping_models(config, progress=progress, device=device)[0]


def _show(result: common.Result) -> str:
    mae = result.table(index="method", columns="k_shot", values="mae")
    return (f"MAE on the {result.config['n_query']} query ratings per test student (columns: K)\n"
            f"{mae.round(4).to_string()}\n\n{result.table().round(4).to_string(index=False)}")


def main(argv: Sequence[str] | None = None) -> common.Result:
    """Command line: ``python -m course_lib.experiments.recommendation --json FILE [--set name=value]``."""
    return common.cli(run, Config, argv, description=__doc__.splitlines()[0], show=_show)


if __name__ == "__main__":
    main()
