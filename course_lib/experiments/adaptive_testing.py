"""Computerized adaptive testing on the SweSAT item bank: which item to ask next, and what it buys.

Derived in chapter 07 (Adaptive difficulty and learning paths), sections 1-4. SweSAT learners are
split by learner (70 / 10 / 20 %, as in chapter 05). On the training learners we fit 2PL IRT
(`fit_2pl`) and meta-train chapter 05's `MetaIRT` with MAML (`course_lib.models.meta_irt`: item
parameters meta-learned, a 2-D ability adapted in 3 inner steps; K drawn from 1..20 in every
meta-batch, because a test asks 1..20 items). Each test learner's answered items are split into a
pool the test may ask and 20 % held out, never asked. The testers (`CAT_METHODS`):

==================================  ========  ======================================================
method                              kind      selection → prediction
==================================  ========  ======================================================
random (2PL IRT)                    baseline  uniform over the pool → 2PL posterior predictive
max Fisher information (2PL IRT)    baseline  argmax a²p(1 − p) at the EAP θ̂ → 2PL ("IRT-Active")
max Fisher information (2PL per     baseline  one 2PL and one ability per test section (SweSAT:
section)                                      quantitative, verbal); only where sections are given
random (meta-learned)               meta      uniform → MetaIRT adapted to the answers
max information (meta-learned)      meta      argmax p(1 − p)‖∂logit/∂φ‖² at the adapted φ → MetaIRT
max information (BOBCAT model)      meta      argmax p(1 − p)aᵀΣa (about φ) → BOBCAT's response model
max bank information (BOBCAT        meta      argmax of the share of the bank's predictive variance
model)                                        the answer removes → BOBCAT's model (the policy's start)
BOBCAT (learned policy)             meta      argmax of the policy trained jointly with the response
                                              model on the held-out loss (`course_lib.adaptive.bobcat`)
==================================  ========  ======================================================

Reported per n: AUC on the held-out answers (pooled, 95 % CI resampling learners) and the RMSE of
the 2PL EAP ability from the items asked against a reference: on SweSAT the 2PL EAP from *all* the
learner's answers (the true ability is unknown), on synthetic 2PL learners (θ ~ N(0, 1), answers
drawn from the fitted SweSAT item parameters) the true θ. ``details["paired"]``: per n, each tester's
AUC minus the reference tester's (per-section 2PL Fisher where sections exist) on the same learners,
with a paired learner-bootstrap CI (`course_lib.metrics.paired_auc_difference`); ``details["swaps"]``
the same for one tester's questions with another's predictions (`_swaps`). The learning-path study of the same
chapter is `course_lib.experiments.learning_paths`; the figures are in `course_lib.viz`.

    python -m course_lib.experiments.adaptive_testing --json FILE [--set n_steps=10]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from course_lib.adaptive.bobcat import BOBCAT, BOBCATConfig, train_bobcat
from course_lib.adaptive.cat import IRTModel, MetaCATModel, run_cat, split_items, summarize_cat, synthetic_learners
from course_lib.adaptive.swaps import SwappedTester, swap_table
from course_lib.baselines.irt import eap_ability_batch, fit_2pl, fit_2pl_by_group
from course_lib.data.responses import StudyData, load_study_data, split_learners, validate_responses
from course_lib.experiments import common
from course_lib.metrics import paired_auc_difference
from course_lib.models.meta_irt import MetaIRTConfig, train_meta_irt

__all__ = ["BOBCAT_REFERENCE", "CAT_METHODS", "TESTER_MODELS", "Config", "run", "cat_table", "main"]

#: Ghosh & Lan (IJCAI 2021), BOBCAT, ASSISTments, AUC on held-out questions after n questions
#: (different data from SweSAT: cite as context, not as a target).
BOBCAT_REFERENCE = [
    {"method": "IRT-Active (BOBCAT paper, ASSISTments)", "n_items": n, "auc": auc}
    for n, auc in ((1, 0.691), (3, 0.712), (5, 0.723), (10, 0.736))
] + [
    {"method": "BOBCAT (BOBCAT paper, ASSISTments)", "n_items": n, "auc": auc}
    for n, auc in ((1, 0.713), (3, 0.732), (5, 0.737), (10, 0.747))
]

#: (method name, kind, learner model (a key of `TESTER_MODELS`), selection rule)
CAT_METHODS = (("random (2PL IRT)", "baseline", "irt", "random"),
               ("max Fisher information (2PL IRT)", "baseline", "irt", "max_information"),
               ("max Fisher information (2PL per section)", "baseline", "irt_sections", "max_information"),
               ("random (meta-learned)", "meta", "meta", "random"),
               ("max information (meta-learned)", "meta", "meta", "max_information"),
               ("max information (BOBCAT model)", "meta", "bobcat", "max_information"),
               ("max bank information (BOBCAT model)", "meta", "bobcat_bank", "max_information"),
               ("BOBCAT (learned policy)", "meta", "bobcat", "learned_policy"))
#: the paired AUC differences are against this tester (the 2PL one where a dataset has no sections)
PAIRED_REFERENCE = ("max Fisher information (2PL per section)", "max Fisher information (2PL IRT)")


@dataclass(frozen=True)
class Config:
    """Settings of the CAT study: tests of ``n_steps`` items, ``holdout_frac`` of each learner's
    answers held out, ``n_synthetic`` synthetic 2PL learners (0: none), ``n_boot`` learner-bootstrap
    resamples, ``methods`` (names from `CAT_METHODS`; ``()``: every tester the data allows), the
    meta-training settings ``meta`` and BOBCAT's ``bobcat``. ``dataset`` names the real learners (loaded by name unless
    `run` gets ``data``). ``keep_traces`` adds traces, splits and models to the details (notebook use)."""

    dataset: str = "swesat"
    n_steps: int = 20
    holdout_frac: float = 0.2
    seed: int = 0
    n_synthetic: int = 500
    n_boot: int = 200
    methods: tuple[str, ...] = ()
    meta: MetaIRTConfig = field(default_factory=lambda: MetaIRTConfig(iterations=300))
    bobcat: BOBCATConfig = field(default_factory=BOBCATConfig)
    keep_traces: bool = False


@dataclass
class _Fit:
    """What the learner models are fitted on."""

    r: torch.Tensor                         # [learners, items], validated
    train: torch.Tensor
    groups: list | None
    params: object                          # the 2PL ItemParams of the training learners
    config: Config
    progress: bool
    cache: dict = field(default_factory=dict)


def _irt(fit: _Fit) -> IRTModel:
    return IRTModel(fit.params.a, fit.params.b, name="2PL IRT")


def _irt_sections(fit: _Fit) -> IRTModel:
    """One 2PL per section, fitted on the training learners, as one `IRTModel` with grouped abilities."""
    fitted = fit_2pl_by_group(fit.r[fit.train], fit.groups)
    a, b = torch.zeros(fit.r.shape[1]), torch.zeros(fit.r.shape[1])
    index = torch.zeros(fit.r.shape[1], dtype=torch.long)
    for g, (cols, params) in enumerate(fitted.values()):
        a[cols], b[cols], index[cols] = params.a, params.b, g
    return IRTModel(a, b, name="2PL per section", groups=index)


def _meta(fit: _Fit) -> MetaCATModel:
    """MAML on `MetaIRT`, K drawn from 1..n_steps per meta-batch (a test adapts after 1..n answers)."""
    cfg = fit.config
    maml = train_meta_irt("maml", fit.r, fit.train, (1, cfg.n_steps), cfg.meta, seed=cfg.seed,
                          progress=fit.progress)
    return MetaCATModel(maml, fit.r.shape[1], name="meta-learned")


def _bobcat(fit: _Fit) -> BOBCAT:
    """BOBCAT's response model and policy, θ started from the 2PL (one loading dimension per section)."""
    if "bobcat" in fit.cache:
        return fit.cache["bobcat"]
    cfg = fit.config.bobcat
    irt = _irt_sections(fit) if fit.groups is not None else _irt(fit)
    if irt.n_groups > cfg.dims:
        raise ValueError(f"bobcat.dims={cfg.dims} is fewer than the {irt.n_groups} test sections; raise it")
    a = torch.zeros(len(irt.a), cfg.dims)
    a[torch.arange(len(irt.a)), irt.groups] = irt.a.float()
    fit.cache["bobcat"] = train_bobcat(fit.r, fit.train, cfg, seed=fit.config.seed,
                                       init=(a, (-irt.a * irt.b).float()), progress=fit.progress)
    return fit.cache["bobcat"]


#: learner model name -> builder (what a tester in `CAT_METHODS` adapts and predicts with)
TESTER_MODELS: common.Registry[Callable[[_Fit], object]] = common.Registry("tester model")
for _key, _build in (("irt", _irt), ("irt_sections", _irt_sections), ("meta", _meta), ("bobcat", _bobcat),
                     ("bobcat_bank", lambda fit: BOBCAT(_bobcat(fit).model, _bobcat(fit).policy, information="bank"))):
    TESTER_MODELS.register(_key)(_build)


def _chosen(config: Config, groups: list | None) -> list[tuple[str, str, str, str]]:
    names = [m[0] for m in CAT_METHODS]
    unknown = [m for m in config.methods if m not in names]
    chosen = [m for m in CAT_METHODS if (not config.methods or m[0] in config.methods)
              and (m[2] != "irt_sections" or groups is not None)]
    if unknown or not chosen:
        raise ValueError(f"methods must name some of {names}; got {list(config.methods)}")
    return chosen


def _test_learners(fit: _Fit, irt: IRTModel, test: torch.Tensor) -> dict[str, tuple]:
    """{dataset: (responses, reference ability, what the reference is)} for the real and synthetic learners."""
    r_test = fit.r[test]
    answered = ~torch.isnan(r_test)
    items = torch.arange(r_test.shape[1]).expand_as(r_test)
    reference = eap_ability_batch(irt.a, irt.b, items, r_test.nan_to_num(0.0), answered)[0]
    out = {fit.config.dataset: (r_test, reference, "2PL EAP from all answers")}
    if fit.config.n_synthetic:
        syn, theta = synthetic_learners(fit.params.a, fit.params.b, fit.config.n_synthetic, seed=fit.config.seed + 7)
        out["synthetic"] = (syn, theta, "true ability")
    return out


def run(config: Config = Config(), *, progress: bool = True, device: torch.device | str | None = None,
        data: StudyData | None = None, item_params=None) -> common.Result:
    """Compare CAT testers on the real test learners and on synthetic 2PL learners, n = 1..n_steps.

    ``data`` (default: `load_study_data(config.dataset)`): responses ``[learners, items]`` with NaN =
    missing and optional item groups (test sections: adds the per-section tester on the real
    learners). ``item_params`` (an `ItemParams`) skips the 2PL fit: it must come from ``fit_2pl``
    on the training learners of ``split_learners(n, (0.7, 0.1, 0.2), seed=seed)``, as the notebook
    does. Rows: dataset, method, kind, rule, n_items, auc(_lo/_hi), ability_rmse(_lo/_hi), reference,
    n_learners. Details: bobcat_reference, timings, n_test_learners, paired (+ traces, splits, models,
    references, responses with ``keep_traces``). The models are tiny: everything runs on the CPU
    (``device`` is accepted for the common contract). Derived in chapter 07, sections 1-4.
    """
    del device
    with common.stopwatch() as elapsed:
        data = load_study_data(config.dataset) if data is None else data
        r = validate_responses(data.responses, name="responses")
        if data.groups is not None and len(data.groups) != r.shape[1]:
            raise ValueError(f"groups has {len(data.groups)} labels but responses has {r.shape[1]} items")
        chosen = _chosen(config, data.groups)
        split = split_learners(r.shape[0], (0.7, 0.1, 0.2), seed=config.seed)
        timings: dict[str, float] = {}
        with common.stopwatch() as t:
            params = fit_2pl(r[split["train"]]) if item_params is None else item_params
        timings["fit_2pl"] = t()
        if len(params.a) != r.shape[1]:
            raise ValueError(f"item_params has {len(params.a)} items but responses has {r.shape[1]}")
        fit = _Fit(r, split["train"], data.groups, params, config, progress)
        models = {}
        for key in dict.fromkeys(m[2] for m in chosen):
            with common.stopwatch() as t:
                models[key] = TESTER_MODELS[key](fit)
            timings[f"fit {key}"] = t()
        rows, keep = _play(fit, models, chosen, _test_learners(fit, models.get("irt") or _irt(fit), split["test"]),
                           timings)
    details = {"bobcat_reference": BOBCAT_REFERENCE, "timings": timings, "n_test_learners": int(len(split["test"])),
               "paired": keep.pop("paired"), "swaps": keep.pop("swaps")}
    if config.keep_traces:
        details.update(keep, models=models, item_params=params)
    settings = {**dataclasses.asdict(config), "methods": [m[0] for m in chosen]}
    return common.Result("adaptive_testing", rows, settings, elapsed(), details)


def _play(fit: _Fit, models: dict, chosen: list, datasets: dict, timings: dict) -> tuple[list[dict], dict]:
    """Every chosen tester on every dataset's learners: rows, and the traces / splits / references."""
    cfg = fit.config
    scorer = models.get("irt") or _irt(fit)
    rows, traces, splits = [], {}, {}
    for name, (resp, ref, ref_name) in datasets.items():
        sp = splits[name] = split_items(resp, cfg.n_steps, cfg.holdout_frac, seed=cfg.seed + 1)
        for method, kind, key, rule in chosen:
            if key == "irt_sections" and name == "synthetic":
                continue                    # synthetic learners have one ability: sections mean nothing
            with common.stopwatch() as t:
                tr = traces[(name, method)] = run_cat(models[key], resp, sp, rule, cfg.n_steps, seed=cfg.seed + 2,
                                                      scorer=scorer, method=method, progress=fit.progress)
                df = summarize_cat(tr, resp, sp, ref, n_boot=cfg.n_boot, seed=cfg.seed, progress=fit.progress)
            timings[f"{name}: {method}"] = t()
            rows += [{"dataset": name, "kind": kind, "reference": ref_name, **row} for row in df.to_dict("records")]
    with common.stopwatch() as t:
        swaps = _swaps(models, scorer, datasets, splits, cfg)
    timings["swaps"] = t()
    return rows, {"paired": _paired(traces, datasets, splits, cfg, fit.progress), "traces": traces, "splits": splits,
                  "swaps": swaps,
                  "references": {name: v[1] for name, v in datasets.items()},
                  "responses": {name: v[0] for name, v in datasets.items()}}


def _paired(traces: dict, datasets: dict, splits: dict, cfg: Config, progress: bool = False) -> list[dict]:
    """Per dataset and n: AUC of every tester minus the reference tester's, paired learner-bootstrap CI."""
    from tqdm.auto import tqdm

    out = []
    bar = tqdm(total=len(traces) * cfg.n_steps, desc="paired bootstrap CIs vs the reference tester", disable=not progress)
    for name, (resp, _, _) in datasets.items():
        ref = next((m for m in PAIRED_REFERENCE if (name, m) in traces), None)
        hold = splits[name].heldout
        y, learner = resp[hold].numpy(), torch.nonzero(hold)[:, 0].numpy()
        for (data, method), tr in traces.items():
            if data != name:
                continue
            if ref is None or method == ref:
                bar.update(cfg.n_steps)                 # nothing to compare with
                continue
            for n in range(cfg.n_steps):
                d = paired_auc_difference(y, tr.heldout_prob[n][hold].numpy(),
                                          traces[(name, ref)].heldout_prob[n][hold].numpy(), learner,
                                          n_boot=cfg.n_boot, seed=cfg.seed + n)
                out.append({"dataset": name, "method": method, "versus": ref, "n_items": n + 1, **d})
                bar.update()
    bar.close()
    return out


SWAP_STEPS = 3


def _swaps(models: dict, scorer: IRTModel, datasets: dict, splits: dict, cfg: Config) -> list[dict]:
    """Real learners, n = 1..3: BOBCAT's questions with the per-section 2PL's predictions and vice versa,
    and with the other inner level (Laplace ↔ grid) on the same θ (`course_lib.adaptive.swaps`)."""
    if not {"bobcat", "irt_sections"} <= models.keys() or cfg.dataset not in datasets:
        return []
    bob, sec = models["bobcat"], models["irt_sections"]
    other = "laplace" if bob.model.posterior == "grid" else "grid"
    exact = BOBCAT(bob.model.with_posterior(other), bob.policy, name=f"BOBCAT θ, {other} inner level")
    testers = {"BOBCAT questions, BOBCAT predictions": (bob, "learned_policy"),
               "per-section questions, per-section predictions": (sec, "max_information"),
               "BOBCAT questions, per-section predictions": (SwappedTester(bob, sec), "learned_policy"),
               "per-section questions, BOBCAT predictions": (SwappedTester(sec, bob), "max_information"),
               f"BOBCAT questions, BOBCAT θ with the {other} inner level":
                   (SwappedTester(bob, exact), "learned_policy")}
    return swap_table(testers, "per-section questions, per-section predictions", datasets[cfg.dataset][0],
                      splits[cfg.dataset], scorer, sec.groups, min(SWAP_STEPS, cfg.n_steps), cfg.n_boot, cfg.seed)


def cat_table(result: common.Result, value: str = "auc", ns: Sequence[int] = (1, 3, 5, 10, 20)) -> pd.DataFrame:
    """CAT rows as a (dataset, method) x n table of ``value`` (auc or ability_rmse)."""
    df = result.table()
    df = df[df["n_items"].isin(ns)]
    order = [m[0] for m in CAT_METHODS]
    wide = df.pivot_table(index=["dataset", "method"], columns="n_items", values=value)
    wide = wide.reindex(sorted(wide.index, key=lambda ix: (ix[0] == "synthetic", order.index(ix[1]))))
    wide.columns.name = f"{value} after n items"
    return wide


def _show(result: common.Result) -> str:
    return "\n\n".join(f"{label} after n items\n{cat_table(result, value).round(3).to_string()}"
                       for value, label in (("auc", "Held-out AUC"), ("ability_rmse", "Ability RMSE")))


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.adaptive_testing [--set name=value] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
