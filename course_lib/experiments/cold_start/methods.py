"""The methods chapter 05's cold-start study compares: one registry entry per method.

Each entry takes the study's `Context` (data, split, validation tasks) and returns one predictor
per K: ``TaskBatch -> P(correct) [tasks, n_query]``. Baselines pick their hyper-parameters on the
validation learners (`Context.pick`); meta-learners are trained by `course_lib.models.meta_irt`.
The table of methods is in :mod:`course_lib.experiments.cold_start`'s docstring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from course_lib import metrics
from course_lib.baselines.fine_tuning import PretrainFinetune
from course_lib.baselines.irt import eap_predict, eap_predict_by_group, fit_2pl, fit_2pl_by_group
from course_lib.baselines.item_mean import ItemMean
from course_lib.baselines.logistic import PerLearnerLogistic
from course_lib.baselines.mirt import eap_predict_mirt, fit_mirt
from course_lib.data.responses import StudyData
from course_lib.experiments import common
from course_lib.models.meta_irt import META_LEARNERS, meta_predict, train_per_k_shot
from course_lib.models.nearest_learners import NearestLearners
from course_lib.models.posterior_meta_irt import train_posterior_meta_irt
from course_lib.tasks import TaskBatch

if TYPE_CHECKING:
    from course_lib.experiments.cold_start import Config

__all__ = ["KINDS", "IRT", "MIRT_METHODS", "METHODS", "Predictor", "Context", "flat_query"]

KINDS = {"item_mean": "baseline", "irt_2pl_eap": "baseline", "irt_2pl_by_group": "baseline",
         "mirt_2d": "baseline", "mirt_3d": "baseline", "per_learner_logistic": "baseline",
         "pretrain_finetune": "baseline", "nearest_learners": "meta", "maml": "meta", "fomaml": "meta",
         "reptile": "meta", "meta_sgd": "meta", "meta_sgd_mirt": "meta", "posterior_meta_2d": "meta",
         "posterior_meta_3d": "meta", "bayes_optimal": "ceiling"}
IRT = ("irt_2pl_eap", "irt_2pl_by_group", "mirt_2d", "mirt_3d")   # the psychometric baselines (paired CIs)
#: section 8's comparison (minutes on SweSAT): run only when named in ``Config.methods``
MIRT_METHODS = ("mirt_2d", "mirt_3d", "meta_sgd_mirt", "posterior_meta_2d", "posterior_meta_3d")
Predictor = Callable[[TaskBatch], Tensor]          # support/query batch -> P(correct) [tasks, n_query]
METHODS: common.Registry[Callable[["Context"], dict[int, Predictor]]] = common.Registry("method")


def flat_query(batch: TaskBatch, prob: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answers, predictions, learner index) of the query answers, flat."""
    mask = batch.query_mask if batch.query_mask is not None else torch.ones_like(batch.y_query, dtype=torch.bool)
    learner = torch.arange(batch.n_tasks)[:, None].expand_as(mask)
    return (batch.y_query[mask].numpy(), prob.detach()[mask].clamp(0, 1).numpy().astype(float),
            learner[mask].numpy())


def _support(batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    return batch.x_support, batch.y_support, batch.support_mask, batch.x_query


@dataclass
class Context:
    """What every method gets: the data, the split, validation tasks (to pick hyper-parameters)."""

    r: Tensor
    train: Tensor
    k_shots: list[int]
    val_tasks: dict[int, TaskBatch]
    data: StudyData
    config: Config
    progress: bool
    device: torch.device
    models: dict = field(default_factory=dict)

    @property
    def r_train(self) -> Tensor:
        return self.r[self.train]

    def pick(self, candidates: dict, make: Callable[[object], Predictor], k_shot: int):
        """The candidate whose predictor has the lowest log loss on the validation learners at K."""
        if not self.val_tasks:
            return next(iter(candidates.values()))
        b = self.val_tasks[k_shot]
        return min(candidates.values(), key=lambda c: metrics.log_loss(*flat_query(b, make(c)(b))[:2]))


# ----------------------------------------------------------------------------- methods

@METHODS.register("item_mean")
def _item_mean(ctx: Context) -> dict[int, Predictor]:
    im = ctx.models["item_mean"] = ItemMean(ctx.r_train)
    return {k_shot: (lambda b: im.predict(*_support(b))) for k_shot in ctx.k_shots}


@METHODS.register("irt_2pl_eap")
def _irt_2pl_eap(ctx: Context) -> dict[int, Predictor]:
    params = ctx.models["irt_2pl_eap"] = fit_2pl(ctx.r_train)
    return {k_shot: (lambda b: eap_predict(params, *_support(b))) for k_shot in ctx.k_shots}


@METHODS.register("irt_2pl_by_group")
def _irt_2pl_by_group(ctx: Context) -> dict[int, Predictor]:
    fitted = ctx.models["irt_2pl_by_group"] = fit_2pl_by_group(ctx.r_train, ctx.data.groups)
    n_items = ctx.r.shape[1]
    return {k_shot: (lambda b: eap_predict_by_group(fitted, n_items, *_support(b))) for k_shot in ctx.k_shots}


def _mirt_fit(ctx: Context, dims: int):
    """The MIRT fit with ``dims`` dimensions on the training learners (fitted once, shared)."""
    key = f"mirt_{dims}d"
    if key not in ctx.models:
        ctx.models[key] = fit_mirt(ctx.r_train, dims, seed=ctx.config.seed)
    return ctx.models[key]


def _mirt(dims: int) -> Callable[[Context], dict[int, Predictor]]:
    def run_method(ctx: Context) -> dict[int, Predictor]:
        params = _mirt_fit(ctx, dims)
        return {k_shot: (lambda b: eap_predict_mirt(params, *_support(b))) for k_shot in ctx.k_shots}
    return run_method


def _posterior_meta(dims: int) -> Callable[[Context], dict[int, Predictor]]:
    def run_method(ctx: Context) -> dict[int, Predictor]:
        params = _mirt_fit(ctx, dims)
        model, history = train_posterior_meta_irt(
            ctx.r, ctx.train, (ctx.k_shots[0], ctx.k_shots[-1]), (params.a, params.d), ctx.config.posterior,
            val_tasks=list(ctx.val_tasks.values()) or None, seed=ctx.config.seed, progress=ctx.progress)
        ctx.models[f"posterior_meta_{dims}d"] = (model, history)
        return {k_shot: (lambda b: model(b).detach()) for k_shot in ctx.k_shots}
    return run_method


for _dims in (2, 3):
    METHODS.register(f"mirt_{_dims}d")(_mirt(_dims))
    METHODS.register(f"posterior_meta_{_dims}d")(_posterior_meta(_dims))


@METHODS.register("meta_sgd_mirt")
def _meta_sgd_mirt(ctx: Context) -> dict[int, Predictor]:
    params = _mirt_fit(ctx, 2)
    cfg = dataclasses.replace(ctx.config.meta, dims=2, steps=5)
    learners = ctx.models["meta_sgd_mirt"] = train_per_k_shot(
        "meta_sgd", ctx.r, ctx.train, ctx.k_shots, cfg, seed=ctx.config.seed, progress=ctx.progress,
        device=ctx.device, init_items=(params.a, params.d))
    return {k_shot: (lambda b, lr=learners[k_shot]: meta_predict(lr, b)) for k_shot in ctx.k_shots}


@METHODS.register("per_learner_logistic")
def _per_learner_logistic(ctx: Context) -> dict[int, Predictor]:
    groups = ctx.data.groups
    feats = PerLearnerLogistic.group_features(groups) if groups is not None else None
    out = {}
    for k_shot in ctx.k_shots:
        cands = {l2: PerLearnerLogistic(feats, n_items=ctx.r.shape[1], l2=l2) for l2 in (0.3, 1.0, 3.0, 10.0)}
        best = ctx.pick(cands, lambda m: (lambda b: m.predict(*_support(b))), k_shot)
        out[k_shot] = lambda b, m=best: m.predict(*_support(b))
    return out


@METHODS.register("pretrain_finetune")
def _pretrain_finetune(ctx: Context) -> dict[int, Predictor]:
    pf = ctx.models["pretrain_finetune"] = PretrainFinetune(ctx.r.shape[1], dims=ctx.config.meta.dims,
                                                            seed=ctx.config.seed)
    pf.pretrain(ctx.r_train)
    grid = {(a, s): (a, s) for a in (0.3, 1.0, 3.0) for s in (1, 5)}
    out = {}
    for k_shot in ctx.k_shots:
        a, s = ctx.pick(grid, lambda c: (lambda b: pf.predict(*_support(b), alpha=c[0], steps=c[1])), k_shot)
        out[k_shot] = lambda b, a=a, s=s: pf.predict(*_support(b), alpha=a, steps=s)
    return out


@METHODS.register("nearest_learners")
def _nearest_learners(ctx: Context) -> dict[int, Predictor]:
    base = NearestLearners(ctx.r_train)
    cands = {(nb, t): NearestLearners(ctx.r_train, n_neighbors=min(nb, len(ctx.train)), temperature=t)
             for nb in (50, 200) for t in (0.05, 0.2, 1.0)}
    out = {}
    for k_shot in ctx.k_shots:
        d_val = base.distances(*_support(ctx.val_tasks[k_shot])[:3]) if ctx.val_tasks else None
        best = ctx.pick(cands, lambda m: (lambda b: m.predict(*_support(b), distances=d_val)), k_shot)
        out[k_shot] = lambda b, m=best: m.predict(*_support(b))
    return out


def _meta_learner(method: str, tune_test_step: bool = False) -> Callable[[Context], dict[int, Predictor]]:
    """A registry entry for the meta-learner ``method`` of `META_LEARNERS` (one model per K)."""
    def run_method(ctx: Context) -> dict[int, Predictor]:
        cfg = ctx.config
        learners = train_per_k_shot(method, ctx.r, ctx.train, ctx.k_shots, cfg.meta, seed=cfg.seed,
                                    progress=ctx.progress, device=ctx.device)
        if tune_test_step and ctx.val_tasks:
            # Reptile never optimises the prediction *after* K answers, so how far to move at test
            # time is not learned: pick the inner step and the number of steps on the validation
            # learners (the meta-parameters θ stay as Reptile learned them).
            for k_shot in ctx.k_shots:
                grid = {(a, s): META_LEARNERS[method](learners[k_shot].model, dataclasses.replace(
                    cfg.meta, reptile_alpha=a, reptile_steps=s)) for a in (0.1, 0.3, 1.0) for s in (1, 3, 10)}
                learners[k_shot] = ctx.pick(grid, lambda lr: (lambda b: meta_predict(lr, b)), k_shot)
        ctx.models[method] = learners
        return {k_shot: (lambda b, lr=learners[k_shot]: meta_predict(lr, b)) for k_shot in ctx.k_shots}
    return run_method


for _name in ("maml", "fomaml", "reptile", "meta_sgd"):
    METHODS.register(_name)(_meta_learner(_name, tune_test_step=_name == "reptile"))


@METHODS.register("bayes_optimal")
def _bayes_optimal(ctx: Context) -> dict[int, Predictor]:
    truth = ctx.data.truth
    return {k_shot: (lambda b: truth.posterior_predictive(*_support(b))) for k_shot in ctx.k_shots}
