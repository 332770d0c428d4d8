"""Chapter 09 study: a fairness audit of the cold-start and recommendation models, and one mitigation.

Derived in chapter 09, section 3. Two audits on group attributes that ship with the data:

* **Cold start on VerbAgg** (chapter 05's protocol; group: the person's ``Gender``). Every person
  is held out once (``folds``-fold cross-fitting by learner: with one 20 % split only about 14 men
  would be scored). Methods: ``item_mean`` (the popularity baseline: share of yes per item),
  ``irt_2pl_eap`` (2PL, ability = EAP from the K answers), ``maml`` (meta-IRT, chapter 05) and
  ``maml_balanced`` (the mitigation: the same meta-IRT trained with group-balanced task sampling,
  `course_lib.fairness.balanced_weights`). Metrics per group: AUC, ECE and MAE of P(yes).
* **Recommendation on InstEval** (chapter 06's protocol; groups: the student's age group
  ``studage`` and the rated lecturer's department ``dept``). Methods: popularity, MF fold-in,
  MeLU-MAML. Metrics per group: MAE and the signed error (mean predicted − mean rating).

Rows: one per (dataset, attribute, method, K, group, metric) with the value and a 95 % learner
bootstrap CI; group ``"gap"`` is max − min over the groups, ``"all"`` everyone. ``details["paired"]``:
gap of method A minus gap of method B on the same learners (paired bootstrap): < 0 means A narrows it.

    python -m course_lib.experiments.fairness --set parts=verbagg --json results/fairness_verbagg.json
    python -m course_lib.experiments.fairness --set parts=insteval --json results/fairness_insteval.json

(the two parts share nothing, so they run as two processes; ``parts=verbagg,insteval`` does both in one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from course_lib import fairness
from course_lib.baselines.irt import eap_predict, fit_2pl
from course_lib.baselines.item_mean import ItemMean
from course_lib.baselines.matrix_factorization import MatrixFactorization
from course_lib.baselines.popularity import Popularity
from course_lib.data.insteval import CARDINALITY, prepare_tasks, query_ratings, task_batch
from course_lib.experiments import common
from course_lib.models.meta_irt import MetaIRTConfig, meta_predict, train_per_k_shot
from course_lib.models.preference import MeLUTraining, choose_steps, meta_train, predictions, rating_scores
from course_lib.tasks import TaskBatch, learner_folds, learner_tasks

__all__ = ["Config", "COLD_START", "PAIRS", "run", "cold_start_predictions", "audit", "main"]

Predictor = Callable[[TaskBatch], torch.Tensor]
#: method name -> (responses, train learners, their group labels, config, progress, device) -> {K: predictor}
COLD_START: common.Registry[Callable[..., dict[int, Predictor]]] = common.Registry("cold-start method")
#: (method A, method B) whose gaps are compared, per dataset
PAIRS = {"verbagg": [("maml", "irt_2pl_eap"), ("maml", "item_mean"), ("maml_balanced", "maml")],
         "insteval": [("MeLU-MAML", "popularity"), ("MeLU-MAML", "MF fold-in")]}


@dataclass(frozen=True)
class Config:
    """Settings of the audit (defaults: what the chapter and README report)."""

    seed: int = 0
    n_boot: int = 200
    threads: int = 1
    parts: tuple[str, ...] = ("verbagg", "insteval")
    # cold start (VerbAgg)
    group: str = "Gender"
    k_shots: tuple[int, ...] = (1, 5, 10, 20)
    folds: int = 5
    methods: tuple[str, ...] = ("item_mean", "irt_2pl_eap", "maml", "maml_balanced")
    meta: MetaIRTConfig = field(default_factory=MetaIRTConfig)
    # recommendation (InstEval)
    rec_groups: tuple[str, ...] = ("studage", "dept")
    rec_k_shots: tuple[int, ...] = (1, 3, 5, 10)
    rec_iterations: int = 1500
    shrinkages: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)
    mf_grid: tuple[int, ...] = (0, 2, 5)  # MF ranks tried (reg 10, bias reg 5), chosen on validation

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PAIRS)
        if unknown or not self.parts:
            raise ValueError(f"parts must name some of {sorted(PAIRS)}, got {self.parts}")
        if not self.k_shots or min(self.k_shots) < 1 or not self.rec_k_shots or min(self.rec_k_shots) < 1:
            raise ValueError(f"every K must be >= 1, got k_shots={self.k_shots}, rec_k_shots={self.rec_k_shots}")
        COLD_START.check(self.methods)


# ----------------------------------------------------------------------------- cold start (VerbAgg)

@COLD_START.register("item_mean")
def _item_mean(r, train, groups, cfg, progress, device):
    im = ItemMean(r[train])
    return {k: (lambda b: im.predict(b.x_support, b.y_support, b.support_mask, b.x_query)) for k in cfg.k_shots}


@COLD_START.register("irt_2pl_eap")
def _irt(r, train, groups, cfg, progress, device):
    params = fit_2pl(r[train])
    return {k: (lambda b: eap_predict(params, b.x_support, b.y_support, b.support_mask, b.x_query))
            for k in cfg.k_shots}


def _meta_irt(balanced: bool):
    def fit(r, train, groups, cfg, progress, device):
        weights = fairness.balanced_weights(groups) if balanced else None
        learners = train_per_k_shot("maml", r, train, cfg.k_shots, cfg.meta, seed=cfg.seed, progress=progress,
                                    device=device, learner_weights=weights)
        return {k: (lambda b, lr=learners[k]: meta_predict(lr, b)) for k in cfg.k_shots}
    return fit


COLD_START.register("maml")(_meta_irt(balanced=False))
COLD_START.register("maml_balanced")(_meta_irt(balanced=True))


def _flat(batch: TaskBatch, prob: torch.Tensor, learners: torch.Tensor) -> tuple[np.ndarray, ...]:
    """(answers, predictions, learner id) of the query answers, flat."""
    mask = batch.query_mask
    ids = learners[:, None].expand_as(mask)
    return batch.y_query[mask].numpy(), prob.detach()[mask].clamp(0, 1).numpy().astype(float), ids[mask].numpy()


def cold_start_predictions(cfg: Config, progress: bool = True, device: torch.device | str = "cpu"
                           ) -> tuple[dict, np.ndarray]:
    """Cross-fitted held-out predictions on VerbAgg: ``({method: {K: (y, p, learner)}}, group label per person)``.

    Fold f's persons are predicted by models trained on the other folds; their K support answers
    are drawn as in chapter 05 (nested over K). Derived in chapter 09, section 3.1.
    """
    from course_lib.data.verbagg import load_verbagg

    data = load_verbagg()
    r, n = data.responses, data.responses.shape[0]
    labels = fairness.group_labels(data.learners, cfg.group, np.arange(n))
    folds = learner_folds(n, cfg.folds, cfg.seed)
    out: dict = {m: {k: [] for k in cfg.k_shots} for m in cfg.methods}
    for f, test in enumerate(folds):
        train = torch.cat([folds[g] for g in range(len(folds)) if g != f]).sort().values
        tasks = {k: learner_tasks(r, k, test, generator=torch.Generator().manual_seed(cfg.seed + 1))
                 for k in cfg.k_shots}
        for method in cfg.methods:
            predictors = COLD_START[method](r, train, labels[train.numpy()], cfg, progress, device)
            for k in cfg.k_shots:
                out[method][k].append(_flat(tasks[k], predictors[k](tasks[k]), test))
    joined = {m: {k: tuple(np.concatenate(parts) for parts in zip(*per_k[k])) for k in per_k} for m, per_k in out.items()}
    return joined, labels


# ----------------------------------------------------------------------------- recommendation (InstEval)

def _recommendation_predictions(cfg: Config, progress: bool, device) -> tuple[dict, dict, dict]:
    """``({method: {K: (y, p, student)}}, {attribute: {K: labels}}, chosen settings)`` on the test students."""
    data = prepare_tasks(n_query=10, max_k_shot=max(cfg.rec_k_shots), seed=cfg.seed)
    triplets, n_lect = data.train_triplets(), CARDINALITY["lecturer"]
    validation = {str(k): (task_batch(data.ratings, data.tasks("validation", k), k, device=device),
                           query_ratings(data.ratings, data.tasks("validation", k))) for k in cfg.rec_k_shots}
    lect, rating = data.ratings["lecturer"].to_numpy(), data.ratings["rating"].to_numpy()

    def baseline(model):
        return lambda tasks, k: np.stack([model.predict_new(lect[s], rating[s], lect[q])
                                          for s, q in zip(tasks.support(k), tasks.query)])

    def best(candidates: dict):
        score = lambda m: np.mean([rating_scores(y, baseline(m)(data.tasks("validation", int(k)), int(k)))["mae"].mean()  # noqa: E731
                                   for k, (_, y) in validation.items()])
        key = min(candidates, key=lambda c: score(candidates[c]))
        return key, baseline(candidates[key])

    shrink, pop = best({s: Popularity(s).fit(*triplets, n_lecturers=n_lect) for s in cfg.shrinkages})
    rank, mf = best({rk: MatrixFactorization(rk, 10.0, 5.0, seed=cfg.seed).fit(*triplets, n_lecturers=n_lect)
                     for rk in cfg.mf_grid})
    recipe = dataclasses.replace(MeLUTraining(), iterations=cfg.rec_iterations)
    learner, _ = meta_train("MAML", data.ratings, data.split.train, validation, recipe, n_query=10, seed=cfg.seed,
                            device=device, progress=progress)
    steps, _ = choose_steps(learner, validation)
    melu = lambda tasks, k: predictions(learner, task_batch(data.ratings, tasks, k, device=device), steps[str(k)])  # noqa: E731
    methods = {"popularity": pop, "MF fold-in": mf, "MeLU-MAML": melu}
    out, groups = {m: {} for m in methods}, {a: {} for a in cfg.rec_groups}
    for k in cfg.rec_k_shots:
        tasks = data.tasks("test", k)
        y = query_ratings(data.ratings, tasks)
        student = np.repeat(tasks.students, y.shape[1])
        rows = np.concatenate(tasks.query)
        for attribute in cfg.rec_groups:
            codes = fairness.require_column(data.ratings, attribute, "InstEval group").to_numpy()[rows]
            groups[attribute][k] = np.array([f"{attribute} {c}" for c in codes])
        for name, predict in methods.items():
            out[name][k] = (y.ravel(), np.asarray(predict(tasks, k), float).ravel(), student)
    return out, groups, {"popularity_shrinkage": shrink, "mf_rank": rank, "melu_steps": steps}


# ----------------------------------------------------------------------------- the audit

def audit(dataset: str, attribute: str, preds: dict, groups_of: Callable[[int, np.ndarray], np.ndarray],
          metric_fns, cfg: Config) -> tuple[list[dict], list[dict]]:
    """Rows (per method, K, group, metric) and paired gap differences (`PAIRS`) for one attribute."""
    rows, paired = [], []
    kinds = {"maml": "meta", "maml_balanced": "meta (mitigated)", "MeLU-MAML": "meta"}
    for method, per_k in preds.items():
        for k, (y, p, learner) in per_k.items():
            g = groups_of(k, learner)
            table = pd.concat([fairness.group_metrics(y, p, g, learner, metric_fns, n_boot=cfg.n_boot, seed=cfg.seed),
                               fairness.group_metrics(y, p, np.full(len(y), "all"), learner, metric_fns,
                                                      n_boot=cfg.n_boot, seed=cfg.seed).query("group == 'all'")])
            base = {"dataset": dataset, "attribute": attribute, "method": method, "kind": kinds.get(method, "baseline"),
                    "k_shot": int(k)}
            rows += [{**base, **r} for r in table.to_dict("records")]
    for a, b in PAIRS[dataset]:
        if a in preds and b in preds:
            for k, (y, p_a, learner) in preds[a].items():
                diff = fairness.gap_difference(y, p_a, preds[b][k][1], groups_of(k, learner), learner, metric_fns,
                                               n_boot=cfg.n_boot, seed=cfg.seed)
                paired += [{"dataset": dataset, "attribute": attribute, "method": a, "versus": b, "k_shot": int(k), **r}
                           for r in diff.to_dict("records")]
    return rows, paired


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None) -> common.Result:
    """The whole audit: ``rows`` as in the module docstring, ``details`` with the paired gap differences,
    the group sizes and the settings chosen on validation. Derived in chapter 09, section 3."""
    from course_lib.device import cpu_threads, get_device

    device = get_device() if device is None else torch.device(device)
    rows, paired, chosen = [], [], {}
    with common.stopwatch() as elapsed, cpu_threads(config.threads or None):
        if "verbagg" in config.parts:
            preds, labels = cold_start_predictions(config, progress, device)
            r, p = audit("verbagg", config.group, preds, lambda k, learner: labels[learner],
                         fairness.BINARY_METRICS, config)
            rows, paired = rows + r, paired + p
        if "insteval" in config.parts:
            preds, groups, chosen = _recommendation_predictions(config, progress, device)
            for attribute in config.rec_groups:
                r, p = audit("insteval", attribute, preds, lambda k, learner, a=attribute: groups[a][k],
                             fairness.RATING_METRICS, config)
                rows, paired = rows + r, paired + p
    settings = {**dataclasses.asdict(config), "device": str(device)}
    return common.Result("fairness", rows, settings, elapsed(), {"paired": paired, "chosen": chosen})


def _show(result: common.Result) -> str:
    t = result.table()
    gaps = t[t["group"] == "gap"].pivot_table(index=["dataset", "attribute", "metric", "method"], columns="k_shot",
                                              values="value", sort=False)
    pairs = pd.DataFrame(result.details["paired"])
    return f"gap (max - min over groups)\n{gaps.round(4).to_string()}\n\npaired gap differences\n" + (
        pairs.round(4).to_string(index=False) if len(pairs) else "(none)")


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.fairness [--json FILE] [--set name=value]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
