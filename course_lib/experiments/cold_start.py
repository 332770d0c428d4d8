"""Cold-start learner modelling: predict a new learner's answers from K of them.

Derived in chapter 05. Learners are split into train / validation / test *by learner*; every
test learner is a task whose support set 𝒟ᵢˢ is K of their answered items (drawn at random, the
same draw for every method; the supports for growing K are nested) and whose query set 𝒟ᵢ^q is
every other answered item. Methods (the registry `METHODS`; `KINDS` gives each one's kind):

==========================  ========  ===========================================================
method                      kind      what it is
==========================  ========  ===========================================================
item_mean                   baseline  share correct per item in the training learners
irt_2pl_eap                 baseline  2PL fitted on the training learners, ability = EAP from K
irt_2pl_by_group            baseline  one 2PL per item group (e.g. test section), EAP per group
mirt_2d / mirt_3d           baseline  multidimensional 2PL (D = 2, 3) by marginal likelihood, EAP
per_learner_logistic        baseline  logistic regression on the learner's own K answers only
pretrain_finetune           baseline  network trained on pooled answers, fine-tuned on K answers
nearest_learners            meta      metric-based: the most similar training learners' answers
maml / fomaml / reptile     meta      `MetaIRT` item parameters meta-learned, ability adapted
meta_sgd                    meta      MAML with a learned inner step α per ability dimension
meta_sgd_mirt               meta      Meta-SGD on `MetaIRT` started from the mirt_2d fit, 5 steps
posterior_meta_2d / _3d     meta      MIRT meta-trained through the exact posterior (no steps)
bayes_optimal               ceiling   posterior predictive under the true parameters (synthetic)
==========================  ========  ===========================================================

Metrics per method and K, pooled over the test learners' query answers: AUC, log-loss and
expected calibration error, with 95 % bootstrap intervals that resample *learners*
(`course_lib.metrics.pooled_bootstrap`); ``details["paired"]``: every meta-learner's AUC minus each
IRT baseline's, with paired learner-bootstrap CIs (`course_lib.metrics.paired_auc_difference`).

    python -m course_lib.experiments.cold_start --set dataset=swesat --json swesat.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from course_lib import metrics
from course_lib.baselines.fine_tuning import PretrainFinetune
from course_lib.baselines.irt import eap_predict, eap_predict_by_group, fit_2pl, fit_2pl_by_group
from course_lib.baselines.item_mean import ItemMean
from course_lib.baselines.mirt import (eap_predict_mirt, explained_variance, fit_mirt, mirt_grid,
                                      mirt_marginal_log_likelihood)
from course_lib.baselines.logistic import PerLearnerLogistic
from course_lib.data.synthetic import sample_like
from course_lib.data.responses import DATASETS, StudyData, load_study_data, split_learners, validate_responses
from course_lib.experiments import common
from course_lib.models.meta_irt import META_LEARNERS, MetaIRTConfig, meta_predict, train_per_k_shot
from course_lib.models.nearest_learners import NearestLearners
from course_lib.models.posterior_meta_irt import PosteriorMetaConfig, train_posterior_meta_irt
from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["Config", "StudyData", "run", "METHODS", "KINDS", "IRT", "MIRT_METHODS", "DATASETS", "evaluation_tasks",
           "main"]

KINDS = {"item_mean": "baseline", "irt_2pl_eap": "baseline", "irt_2pl_by_group": "baseline",
         "mirt_2d": "baseline", "mirt_3d": "baseline", "per_learner_logistic": "baseline",
         "pretrain_finetune": "baseline", "nearest_learners": "meta", "maml": "meta", "fomaml": "meta",
         "reptile": "meta", "meta_sgd": "meta", "meta_sgd_mirt": "meta", "posterior_meta_2d": "meta",
         "posterior_meta_3d": "meta", "bayes_optimal": "ceiling"}
IRT = ("irt_2pl_eap", "irt_2pl_by_group", "mirt_2d", "mirt_3d")   # the psychometric baselines (paired CIs)
#: section 8's comparison (minutes on SweSAT): run only when named in ``Config.methods``
MIRT_METHODS = ("mirt_2d", "mirt_3d", "meta_sgd_mirt", "posterior_meta_2d", "posterior_meta_3d")
Predictor = Callable[[TaskBatch], Tensor]          # support/query batch -> P(correct) [tasks, n_query]
METHODS: common.Registry[Callable[["_Context"], dict[int, Predictor]]] = common.Registry("method")


@dataclass(frozen=True)
class Config:
    """Settings of the cold-start study. ``methods=()``: every method the data allows
    (irt_2pl_by_group needs item groups, bayes_optimal the true parameters) except `MIRT_METHODS`,
    which run only when named. ``threads``: torch CPU
    threads (1 is fastest for these tiny models; 0 leaves torch's setting). ``keep_predictions``
    adds predictions, tasks and fitted models to ``Result.details`` (not JSON-able: notebook use)."""

    dataset: str = "swesat"
    k_shots: tuple[int, ...] = (1, 3, 5, 10, 20)
    methods: tuple[str, ...] = ()
    seed: int = 0
    fractions: tuple[float, ...] = (0.7, 0.1, 0.2)
    n_boot: int = 200
    meta: MetaIRTConfig = field(default_factory=MetaIRTConfig)
    posterior: PosteriorMetaConfig = field(default_factory=PosteriorMetaConfig)
    threads: int = 1
    keep_predictions: bool = False


def evaluation_tasks(responses: Tensor, learners: Tensor, k_shot: int, seed: int) -> TaskBatch:
    """One task per learner: K random answered items as support, all other answered items as query.

    The random order of each learner's items depends only on ``seed`` (not on K), so the support
    sets for growing K are nested: the K = 3 items include the K = 1 item. Derived in chapter 05, section 2.
    """
    return learner_tasks(responses, k_shot, learners, generator=torch.Generator().manual_seed(seed))


def _flat(batch: TaskBatch, prob: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(answers, predictions, learner index) of the query answers, flat."""
    mask = batch.query_mask if batch.query_mask is not None else torch.ones_like(batch.y_query, dtype=torch.bool)
    learner = torch.arange(batch.n_tasks)[:, None].expand_as(mask)
    return (batch.y_query[mask].numpy(), prob.detach()[mask].clamp(0, 1).numpy().astype(float),
            learner[mask].numpy())


def _support(batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    return batch.x_support, batch.y_support, batch.support_mask, batch.x_query


@dataclass
class _Context:
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
        return min(candidates.values(), key=lambda c: metrics.log_loss(*_flat(b, make(c)(b))[:2]))


# ----------------------------------------------------------------------------- methods

@METHODS.register("item_mean")
def _item_mean(ctx: _Context) -> dict[int, Predictor]:
    im = ctx.models["item_mean"] = ItemMean(ctx.r_train)
    return {k_shot: (lambda b: im.predict(*_support(b))) for k_shot in ctx.k_shots}


@METHODS.register("irt_2pl_eap")
def _irt_2pl_eap(ctx: _Context) -> dict[int, Predictor]:
    params = ctx.models["irt_2pl_eap"] = fit_2pl(ctx.r_train)
    return {k_shot: (lambda b: eap_predict(params, *_support(b))) for k_shot in ctx.k_shots}


@METHODS.register("irt_2pl_by_group")
def _irt_2pl_by_group(ctx: _Context) -> dict[int, Predictor]:
    fitted = ctx.models["irt_2pl_by_group"] = fit_2pl_by_group(ctx.r_train, ctx.data.groups)
    n_items = ctx.r.shape[1]
    return {k_shot: (lambda b: eap_predict_by_group(fitted, n_items, *_support(b))) for k_shot in ctx.k_shots}


def _mirt_fit(ctx: _Context, dims: int):
    """The MIRT fit with ``dims`` dimensions on the training learners (fitted once, shared)."""
    key = f"mirt_{dims}d"
    if key not in ctx.models:
        ctx.models[key] = fit_mirt(ctx.r_train, dims, seed=ctx.config.seed)
    return ctx.models[key]


def _mirt(dims: int) -> Callable[[_Context], dict[int, Predictor]]:
    def run_method(ctx: _Context) -> dict[int, Predictor]:
        params = _mirt_fit(ctx, dims)
        return {k_shot: (lambda b: eap_predict_mirt(params, *_support(b))) for k_shot in ctx.k_shots}
    return run_method


def _posterior_meta(dims: int) -> Callable[[_Context], dict[int, Predictor]]:
    def run_method(ctx: _Context) -> dict[int, Predictor]:
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
def _meta_sgd_mirt(ctx: _Context) -> dict[int, Predictor]:
    params = _mirt_fit(ctx, 2)
    cfg = dataclasses.replace(ctx.config.meta, dims=2, steps=5)
    learners = ctx.models["meta_sgd_mirt"] = train_per_k_shot(
        "meta_sgd", ctx.r, ctx.train, ctx.k_shots, cfg, seed=ctx.config.seed, progress=ctx.progress,
        device=ctx.device, init_items=(params.a, params.d))
    return {k_shot: (lambda b, lr=learners[k_shot]: meta_predict(lr, b)) for k_shot in ctx.k_shots}


@METHODS.register("per_learner_logistic")
def _per_learner_logistic(ctx: _Context) -> dict[int, Predictor]:
    groups = ctx.data.groups
    feats = PerLearnerLogistic.group_features(groups) if groups is not None else None
    out = {}
    for k_shot in ctx.k_shots:
        cands = {l2: PerLearnerLogistic(feats, n_items=ctx.r.shape[1], l2=l2) for l2 in (0.3, 1.0, 3.0, 10.0)}
        best = ctx.pick(cands, lambda m: (lambda b: m.predict(*_support(b))), k_shot)
        out[k_shot] = lambda b, m=best: m.predict(*_support(b))
    return out


@METHODS.register("pretrain_finetune")
def _pretrain_finetune(ctx: _Context) -> dict[int, Predictor]:
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
def _nearest_learners(ctx: _Context) -> dict[int, Predictor]:
    base = NearestLearners(ctx.r_train)
    cands = {(nb, t): NearestLearners(ctx.r_train, n_neighbors=min(nb, len(ctx.train)), temperature=t)
             for nb in (50, 200) for t in (0.05, 0.2, 1.0)}
    out = {}
    for k_shot in ctx.k_shots:
        d_val = base.distances(*_support(ctx.val_tasks[k_shot])[:3]) if ctx.val_tasks else None
        best = ctx.pick(cands, lambda m: (lambda b: m.predict(*_support(b), distances=d_val)), k_shot)
        out[k_shot] = lambda b, m=best: m.predict(*_support(b))
    return out


def _meta_learner(method: str, tune_test_step: bool = False) -> Callable[[_Context], dict[int, Predictor]]:
    """A registry entry for the meta-learner ``method`` of `META_LEARNERS` (one model per K)."""
    def run_method(ctx: _Context) -> dict[int, Predictor]:
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
def _bayes_optimal(ctx: _Context) -> dict[int, Predictor]:
    truth = ctx.data.truth
    return {k_shot: (lambda b: truth.posterior_predictive(*_support(b))) for k_shot in ctx.k_shots}


# ----------------------------------------------------------------------------- the study

def _load(config: Config) -> StudyData:
    """The named data set; ``<name>_simulated``: learners simulated from a 3-D MIRT fit of ``<name>``
    (same items, same missing answers) with the true parameters, for the Bayes-optimal ceiling."""
    base = config.dataset.removesuffix("_simulated")
    data = load_study_data(base, config.seed)
    if base == config.dataset:
        return data
    params = fit_mirt(data.responses, 3, seed=config.seed)
    truth = sample_like(params.a, params.d, torch.isnan(data.responses), seed=config.seed)
    return StudyData(truth.responses, data.groups, truth)


def _methods(config: Config, data: StudyData) -> tuple[str, ...]:
    """The methods to run: validated names, or (``methods=()``) every method the data allows
    but `MIRT_METHODS`."""
    needs = {"irt_2pl_by_group": (data.groups, "groups (one label per item)"),
             "bayes_optimal": (data.truth, "truth (the SyntheticIRT that generated the data)")}
    if config.methods:
        METHODS.check(config.methods)
        for m in config.methods:
            if m in needs and needs[m][0] is None:
                raise ValueError(f"{m} needs {needs[m][1]}: pass data=StudyData(responses, groups, truth)")
        return tuple(config.methods)
    return tuple(m for m in METHODS if (m not in needs or needs[m][0] is not None) and m not in MIRT_METHODS)


def _score(ctx: _Context, predictors: dict, test_tasks: dict, timings: dict) -> tuple[list[dict], dict]:
    """One row per method and K: pooled AUC / log loss with learner-bootstrap CIs, and ECE."""
    rows, predictions = [], {}
    for method, per_k in predictors.items():
        predictions[method] = {}
        for k_shot in ctx.k_shots:
            b = test_tasks[k_shot]
            with common.stopwatch() as elapsed:
                y, p, learner = _flat(b, per_k[k_shot](b))
            timings[method] += elapsed()
            m = metrics.pooled_bootstrap(y, p, learner, n_boot=ctx.config.n_boot, seed=ctx.config.seed,
                                         score_bins=4096)
            rows.append({"method": method, "kind": KINDS[method], "k_shot": k_shot, **m,
                         "ece": metrics.expected_calibration_error(y, p), "n_learners": int(b.n_tasks),
                         "n_answers": int(len(y))})
            predictions[method][k_shot] = (y, p, learner)
    return rows, predictions


def _mirt_summary(ctx: _Context, r_val: Tensor) -> dict:
    """Per fitted MIRT: log-likelihood per training / validation learner, the loadings' explained variance."""
    out = {}
    for key, params in sorted(ctx.models.items()):
        if key.startswith("mirt_") and len(r_val):
            with torch.no_grad():
                ll = mirt_marginal_log_likelihood(r_val.double(), params.a.double(), params.d.double(),
                                                  *mirt_grid(params.dims))
            out[key] = {**params.info, "explained_variance": explained_variance(params).tolist(),
                        "val_loglik_per_learner": float(ll) / len(r_val)}
    return out


def _paired(predictions: dict, config: Config) -> list[dict]:
    """AUC of every meta-learner minus every IRT baseline's, per K, with paired learner-bootstrap CIs."""
    return [{"method": m, "against": ref, "k_shot": k, **metrics.paired_auc_difference(
                y, p, predictions[ref][k][1], learner, n_boot=config.n_boot, seed=config.seed)}
            for m in predictions if KINDS[m] == "meta" for ref in IRT if ref in predictions
            for k, (y, p, learner) in predictions[m].items()]


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None,
        data: StudyData | None = None) -> common.Result:
    """Compare cold-start predictors on ``data`` (default: `load_study_data(config.dataset)`), one row per method and K.

    Rows: method, kind, k_shot, auc(_lo/_hi), logloss(_lo/_hi), ece, n_learners, n_answers.
    Details: ``split`` (learner indices), ``timings`` (each method's fitting + prediction time);
    with ``config.keep_predictions`` also ``predictions[method][K] = (y, p, learner)``, ``supports[K]``
    (the test tasks) and ``models``. Baseline hyper-parameters are picked on the validation
    learners; meta-learners use ``config.meta``. Meta-training runs on ``device`` (default
    `get_device()`), everything else on the CPU. Derived in chapter 05, section 6.
    """
    from course_lib.device import cpu_threads, get_device

    device = get_device() if device is None else torch.device(device)
    k_shots = sorted(int(k_shot) for k_shot in config.k_shots)
    if not k_shots or k_shots[0] < 1:
        raise ValueError(f"k_shots must be positive support sizes, got {config.k_shots}")
    with common.stopwatch() as elapsed, cpu_threads(config.threads or None):
        data = _load(config) if data is None else data
        methods = _methods(config, data)
        r = validate_responses(data.responses, k_shot=k_shots[-1], name="responses")
        if data.groups is not None and len(data.groups) != r.shape[1]:
            raise ValueError(f"groups has {len(data.groups)} labels but responses has {r.shape[1]} items")
        split = split_learners(r.shape[0], tuple(config.fractions), seed=config.seed)
        val = split["validation"]
        val_tasks = {k_shot: evaluation_tasks(r, val, k_shot, config.seed + 2) for k_shot in k_shots} if len(val) else {}
        ctx = _Context(r, split["train"], k_shots, val_tasks, data, config, progress, device)
        test_tasks = {k_shot: evaluation_tasks(r, split["test"], k_shot, seed=config.seed + 1) for k_shot in k_shots}
        predictors, timings = {}, {}
        for method in methods:
            with common.stopwatch() as fit_time:
                predictors[method] = METHODS[method](ctx)
            timings[method] = fit_time()
        rows, predictions = _score(ctx, predictors, test_tasks, timings)
    details = {"split": {name: idx.tolist() for name, idx in split.items()}, "timings": timings,
               "paired": _paired(predictions, config), "mirt_fits": _mirt_summary(ctx, r[val])}
    if config.keep_predictions:
        details.update(predictions=predictions, supports=test_tasks, models=ctx.models)
    settings = {**dataclasses.asdict(config), "methods": list(methods), "device": str(device)}
    return common.Result("cold_start", rows, settings, elapsed(), details)


def _show(result: common.Result) -> str:
    cols = ["method", "kind", "k_shot", "auc", "auc_lo", "auc_hi", "logloss", "ece", "n_learners"]
    return result.table()[cols].round(4).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.cold_start --set dataset=swesat [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
