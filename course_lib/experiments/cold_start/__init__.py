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

The study is a package: this module holds the protocol (`Config`, `run`, scoring, the CLI) and
:mod:`course_lib.experiments.cold_start.methods` the registry of methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from course_lib import metrics
from course_lib.baselines.mirt import explained_variance, fit_mirt, mirt_grid, mirt_marginal_log_likelihood
from course_lib.data.responses import DATASETS, StudyData, load_study_data, split_learners, validate_responses
from course_lib.data.synthetic import sample_like
from course_lib.experiments import common
from course_lib.experiments.cold_start.methods import IRT, KINDS, METHODS, MIRT_METHODS, Context, flat_query
from course_lib.models.meta_irt import MetaIRTConfig
from course_lib.models.posterior_meta_irt import PosteriorMetaConfig
from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["Config", "StudyData", "run", "METHODS", "KINDS", "IRT", "MIRT_METHODS", "DATASETS", "evaluation_tasks",
           "main"]


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


def _score(ctx: Context, predictors: dict, test_tasks: dict, timings: dict) -> tuple[list[dict], dict]:
    """One row per method and K: pooled AUC / log loss with learner-bootstrap CIs, and ECE."""
    rows, predictions = [], {}
    for method, per_k in tqdm(predictors.items(), desc="cold start: score (bootstrap CIs)", disable=not ctx.progress):
        predictions[method] = {}
        for k_shot in ctx.k_shots:
            b = test_tasks[k_shot]
            with common.stopwatch() as elapsed:
                y, p, learner = flat_query(b, per_k[k_shot](b))
            timings[method] += elapsed()
            m = metrics.pooled_bootstrap(y, p, learner, n_boot=ctx.config.n_boot, seed=ctx.config.seed,
                                         score_bins=4096)
            rows.append({"method": method, "kind": KINDS[method], "k_shot": k_shot, **m,
                         "ece": metrics.expected_calibration_error(y, p), "n_learners": int(b.n_tasks),
                         "n_answers": int(len(y))})
            predictions[method][k_shot] = (y, p, learner)
    return rows, predictions


def _mirt_summary(ctx: Context, r_val: Tensor) -> dict:
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


def _paired(predictions: dict, config: Config, progress: bool = False) -> list[dict]:
    """AUC of every meta-learner minus every IRT baseline's, per K, with paired learner-bootstrap CIs."""
    pairs = [(m, ref, k) for m in predictions if KINDS[m] == "meta" for ref in IRT if ref in predictions
             for k in predictions[m]]
    out = []
    for m, ref, k in tqdm(pairs, desc="cold start: paired bootstrap CIs", disable=not progress):
        y, p, learner = predictions[m][k]
        out.append({"method": m, "against": ref, "k_shot": k, **metrics.paired_auc_difference(
            y, p, predictions[ref][k][1], learner, n_boot=config.n_boot, seed=config.seed, score_bins=4096)})
    return out


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
        ctx = Context(r, split["train"], k_shots, val_tasks, data, config, progress, device)
        test_tasks = {k_shot: evaluation_tasks(r, split["test"], k_shot, seed=config.seed + 1) for k_shot in k_shots}
        predictors, timings = {}, {}
        for method in tqdm(methods, desc="cold start: fit each method", disable=not progress):
            with common.stopwatch() as fit_time:
                predictors[method] = METHODS[method](ctx)
            timings[method] = fit_time()
        rows, predictions = _score(ctx, predictors, test_tasks, timings)
    details = {"split": {name: idx.tolist() for name, idx in split.items()}, "timings": timings,
               "paired": _paired(predictions, config, progress), "mirt_fits": _mirt_summary(ctx, r[val])}
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

