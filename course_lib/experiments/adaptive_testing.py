"""Chapter 07 studies: adaptive testing on the SweSAT item bank and learning paths in a simulated classroom.

Derived in chapter 07 (Adaptive difficulty and learning paths).

Part A, computerized adaptive testing (`run_cat_study`). SweSAT learners are split by learner
(70 / 10 / 20 %, as in chapter 05). On the training learners we fit 2PL IRT (`fit_2pl`) and
meta-train chapter 05's `MetaIRT` with MAML (item parameters meta-learned, a 2-D ability adapted
in 3 inner steps; K drawn from 1..20 in every meta-batch, because a test asks 1..20 items). Each
test learner's answered items are split into a pool the test may ask and 20 % held out, never
asked. Four testers ask n = 1..20 items:

==================================  ========  ======================================================
method                              kind      selection → prediction
==================================  ========  ======================================================
random (2PL IRT)                    baseline  uniform over the pool → 2PL posterior predictive
max Fisher information (2PL IRT)    baseline  argmax a²p(1 − p) at the EAP θ̂ → 2PL ("IRT-Active")
max Fisher information (2PL per     baseline  one 2PL and one ability per test section (SweSAT:
section)                                      quantitative, verbal); only where sections are given
random (meta-learned)               meta      uniform → MetaIRT adapted to the answers
max information (meta-learned)      meta      argmax p(1 − p)‖∂logit/∂φ‖² at the adapted φ → MetaIRT
==================================  ========  ======================================================

Reported per n: AUC on the held-out answers (pooled, 95 % CI resampling learners) and the RMSE of
the 2PL EAP ability from the items asked against a reference: on SweSAT the 2PL EAP from *all* the
learner's answers (the true ability is unknown), on synthetic 2PL learners (θ ~ N(0, 1), answers
drawn from the fitted SweSAT item parameters) the true θ.

Part B, learning paths (`run_classroom_study`): `course_lib.adaptive.classroom`'s default classroom. A past
cohort works through the fixed curriculum; from its logs we fit BKT per (learner type, skill) with
`fit_bkt` (checked against pyBKT) and meta-learn the prior over learners. New learners then get the
fixed curriculum, the Thompson-sampling tutor from scratch (flat prior), the same tutor with the
meta-learned prior, and the oracle tutor that knows each learner's type.

    python -m course_lib.experiments.adaptive_testing --json FILE [--part cat|classroom|all]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["BOBCAT_REFERENCE", "CAT_METHODS", "run", "run_cat_study", "run_classroom_study",
           "train_meta_cat_model", "cat_table", "figure_cat", "figure_bkt_recovery", "figure_meta_prior",
           "figure_mastery_curves", "figure_time_to_mastery", "main"]

#: Ghosh & Lan (IJCAI 2021), BOBCAT, ASSISTments, AUC on held-out questions after n questions
#: (different data from SweSAT: cite as context, not as a target).
BOBCAT_REFERENCE = [
    {"method": "IRT-Active (BOBCAT paper, ASSISTments)", "n_items": n, "auc": auc}
    for n, auc in ((1, 0.691), (3, 0.712), (5, 0.723), (10, 0.736))
] + [
    {"method": "BOBCAT (BOBCAT paper, ASSISTments)", "n_items": n, "auc": auc}
    for n, auc in ((1, 0.713), (3, 0.732), (5, 0.737), (10, 0.747))
]

#: (method name, kind, model key, selection rule)
CAT_METHODS = (("random (2PL IRT)", "baseline", "irt", "random"),
               ("max Fisher information (2PL IRT)", "baseline", "irt", "max_information"),
               ("max Fisher information (2PL per section)", "baseline", "irt_sections", "max_information"),
               ("random (meta-learned)", "meta", "meta", "random"),
               ("max information (meta-learned)", "meta", "meta", "max_information"))


# ----------------------------------------------------------------------------- part A: CAT

def train_meta_cat_model(responses: torch.Tensor, train: torch.Tensor, n_steps: int = 20, seed: int = 0,
                         iterations: int = 300, progress: bool = True, config=None):
    """Meta-train chapter 05's `MetaIRT` with MAML on supports of every size K = 1..``n_steps``.

    Hyper-parameters are chapter 05's `MetaConfig` (2 ability dimensions, α = 1, 3 inner steps,
    Adam β = 0.03, meta-batch 64, ≤ 40 query items); only K differs: drawn uniformly from
    1..n_steps for every meta-batch, since an adaptive test adapts after 1, 2, ..., n_steps answers.
    Returns the trained `MAML`. Derived in chapter 07, section 3.
    """
    from course_lib.algorithms import MAML
    from course_lib.experiments.cold_start import MetaConfig
    from course_lib.models.meta_irt import MetaIRT
    from course_lib.tasks import learner_tasks

    cfg = config or MetaConfig()
    r = responses
    p = torch.nanmean(r[train], 0).clamp(0.02, 0.98)
    model = MetaIRT(r.shape[1], cfg.dims, init_d=torch.logit(p), seed=seed)
    maml = MAML(model, loss="bce", alpha=cfg.alpha, steps=cfg.steps, adapt=["ability"])
    counts = (~torch.isnan(r[train])).sum(1)
    usable = train[counts > n_steps]

    def sample(g: torch.Generator):
        k = int(torch.randint(1, n_steps + 1, (1,), generator=g))
        ix = usable[torch.randint(len(usable), (cfg.meta_batch,), generator=g)]
        return learner_tasks(r, k, ix, generator=g, max_query=cfg.max_query)

    opt = torch.optim.Adam(maml.parameters(), lr=cfg.beta)
    maml.fit(sample, iterations, seed=seed, progress=progress, optimizer=opt, log_every=max(iterations // 4, 1))
    return maml


def _all_answers_ability(irt, responses: torch.Tensor) -> torch.Tensor:
    """2PL EAP from every answered item of each learner (the reference when the truth is unknown)."""
    from course_lib.baselines.irt import eap_ability_batch

    answered = ~torch.isnan(responses)
    items = torch.arange(responses.shape[1]).expand_as(responses)
    return eap_ability_batch(irt.a, irt.b, items, responses.nan_to_num(0.0), answered)[0]


def run_cat_study(responses: torch.Tensor | None = None, n_steps: int = 20, holdout_frac: float = 0.2,
                  seed: int = 0, n_synthetic: int = 500, meta_iterations: int = 300, n_boot: int = 200,
                  methods: Sequence[str] | None = None, progress: bool = True,
                  keep_traces: bool = False, item_params=None, groups: Sequence[str] | str | None = "auto") -> dict:
    """Compare CAT selection rules on SweSAT test learners and on synthetic 2PL learners.

    ``responses [learners, items]`` (default: SweSAT) with NaN = missing. Returns ``{"wall_s",
    "rows", "bobcat_reference", "timings", "config"}``; rows have dataset, method, kind, rule,
    n_items, auc, auc_lo, auc_hi, ability_rmse(_lo/_hi), reference, n_learners. With
    ``keep_traces`` also the `CATTrace` objects, the splits, the fitted models and the references.
    ``groups`` (one label per item; ``"auto"``: SweSAT's sections when ``responses`` is None) adds the
    per-section 2PL tester on the real learners. ``item_params`` (an `ItemParams`) skips the 2PL fit:
    it must come from ``fit_2pl`` on the training learners of ``split_learners(n, (0.7, 0.1, 0.2),
    seed=seed)``, as the notebook does. Derived in chapter 07, sections 1-4.
    """
    from course_lib.baselines.irt import fit_2pl
    from course_lib.adaptive.cat import IRTModel, MetaCATModel, run_cat, split_items, summarize_cat, synthetic_learners
    from course_lib.data.responses import split_learners, validate_responses

    t_start = time.perf_counter()
    if responses is None:
        from course_lib.data.swesat import load_swesat
        data = load_swesat()
        responses = data.responses
        groups = list(data.items["group"]) if groups == "auto" else groups
    groups = None if isinstance(groups, str) else groups
    r = validate_responses(responses, name="responses")
    if groups is not None and len(groups) != r.shape[1]:
        raise ValueError(f"groups has {len(groups)} labels but responses has {r.shape[1]} items")
    chosen = [m for m in CAT_METHODS if (methods is None or m[0] in methods)
              and (m[2] != "irt_sections" or groups is not None)]
    if not chosen:
        raise ValueError(f"methods must name some of {[m[0] for m in CAT_METHODS]}")
    timings: dict[str, float] = {}
    split = split_learners(r.shape[0], (0.7, 0.1, 0.2), seed=seed)
    train, test = split["train"], split["test"]
    t0 = time.perf_counter()
    params = fit_2pl(r[train], seed=seed) if item_params is None else item_params
    if len(params.a) != r.shape[1]:
        raise ValueError(f"item_params has {len(params.a)} items but responses has {r.shape[1]}")
    irt = IRTModel(params.a, params.b, name="2PL IRT")
    timings["fit_2pl"] = time.perf_counter() - t0
    models = {"irt": irt}
    if any(m[2] == "irt_sections" for m in chosen):
        t0 = time.perf_counter()
        labels = np.asarray(groups)
        names = sorted(set(labels.tolist()))
        a_sec, b_sec = torch.zeros(r.shape[1]), torch.zeros(r.shape[1])
        index = torch.as_tensor([names.index(g) for g in labels])
        for name in names:
            cols = torch.as_tensor(np.flatnonzero(labels == name))
            sub = r[train][:, cols]
            fitted = fit_2pl(sub[~torch.isnan(sub).all(1)], seed=seed)
            a_sec[cols], b_sec[cols] = fitted.a, fitted.b
        models["irt_sections"] = IRTModel(a_sec, b_sec, name="2PL per section", groups=index)
        timings["fit_2pl_per_section"] = time.perf_counter() - t0
    if any(m[2] == "meta" for m in chosen):
        t0 = time.perf_counter()
        maml = train_meta_cat_model(r, train, n_steps, seed, meta_iterations, progress)
        models["meta"] = MetaCATModel(maml, r.shape[1], name="meta-learned")
        timings["meta_train"] = time.perf_counter() - t0

    datasets = {}
    r_test = r[test]
    datasets["swesat"] = (r_test, _all_answers_ability(irt, r_test), "2PL EAP from all answers")
    if n_synthetic:
        syn, theta = synthetic_learners(params.a, params.b, n_synthetic, seed=seed + 7)
        datasets["synthetic"] = (syn, theta, "true ability")
    rows, traces, splits = [], {}, {}
    for name, (resp, ref, ref_name) in datasets.items():
        sp = split_items(resp, n_steps, holdout_frac, seed=seed + 1)
        splits[name] = sp
        for method, kind, key, rule in chosen:
            if key == "irt_sections" and name != "swesat":
                continue                    # synthetic learners have one ability: sections mean nothing
            t0 = time.perf_counter()
            tr = run_cat(models[key], resp, sp, rule, n_steps, seed=seed + 2, scorer=irt, method=method,
                         progress=progress)
            df = summarize_cat(tr, resp, sp, ref, n_boot=n_boot, seed=seed)
            timings[f"{name}: {method}"] = time.perf_counter() - t0
            for row in df.to_dict("records"):
                rows.append({"dataset": name, "kind": kind, "reference": ref_name, **row})
            traces[(name, method)] = tr
    out = {"wall_s": time.perf_counter() - t_start, "rows": rows, "bobcat_reference": BOBCAT_REFERENCE,
           "timings": timings,
           "config": {"n_steps": n_steps, "holdout_frac": holdout_frac, "seed": seed, "n_synthetic": n_synthetic,
                      "meta_iterations": meta_iterations, "n_boot": n_boot, "n_test_learners": int(len(test))}}
    if keep_traces:
        out.update(traces=traces, splits=splits, models=models, item_params=params,
                   references={k: v[1] for k, v in datasets.items()},
                   responses={k: v[0] for k, v in datasets.items()})
    return out


# ----------------------------------------------------------------------------- part B: classroom

def _ci_share(x: np.ndarray) -> tuple[float, float, float]:
    m = float(np.mean(x))
    half = 1.96 * np.sqrt(max(m * (1 - m), 1e-12) / len(x))
    return m, m - half, m + half


def _median_censored(t: np.ndarray, horizon: int) -> float:
    """Median of times with NaN = not within the horizon (counted as > horizon); NaN if > half censored."""
    filled = np.where(np.isnan(t), np.inf, t)
    med = float(np.median(filled))
    return med if np.isfinite(med) else float("nan")


def run_classroom_study(n_past: int = 600, past_horizon: int = 80, n_test: int = 500, horizon: int = 100,
                        n_hypotheses: int = 128, block: int = 8, threshold: float = 0.95, seed: int = 0,
                        pybkt_learners: int = 100, progress: bool = True, keep_logs: bool = False) -> dict:
    """Fixed curriculum vs adaptive tutors (from scratch / meta-learned prior / oracle) in the classroom.

    Returns ``{"wall_s", "policies", "curves", "time_to_mastery", "bkt_recovery", "pybkt_check",
    "meta_prior", "timings", "config"}`` (JSON-safe); with ``keep_logs`` also the `ClassroomLogs`
    and the policies. ``pybkt_learners`` past learners of one (type, skill) are re-fitted with
    pyBKT to check `fit_bkt` (0 skips it). Derived in chapter 07, sections 5-9.
    """
    from course_lib.adaptive.classroom import (PARAM_NAMES, FixedCurriculum, OraclePolicy, ThompsonPolicy,
                                      default_classroom, fit_bkt, fit_bkt_pybkt, logs_to_frame,
                                      meta_learn_prior, sample_hypotheses, simulate)

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    room = default_classroom()
    cur = room.curriculum
    t0 = time.perf_counter()
    past = simulate(room, FixedCurriculum(cur, block), n_past, past_horizon, seed=seed)
    frame = logs_to_frame(past, room, by_type=True)
    fit = fit_bkt(frame, seed=seed)
    timings["fit_bkt"] = time.perf_counter() - t0
    truth = room.true_params()
    recovery = []
    for _, row in truth.iterrows():
        key = f"{row['learner_type']}/{row['skill']}"
        s = cur.skills.index(row["skill"])
        for q in PARAM_NAMES:
            recovery.append({"learner_type": row["learner_type"], "skill": row["skill"],
                             "has_prerequisites": bool(cur.prerequisites[s]), "param": q,
                             "true": float(row[q]), "fitted": float(fit.loc[key, q]),
                             "n_attempts": int(fit.loc[key, "n_attempts"])})
    pybkt_rows = []
    if pybkt_learners:
        t0 = time.perf_counter()
        key = f"{room.learner_types[0]}/{cur.skills[0]}"
        users = np.sort(frame.loc[frame["skill_name"] == key, "user_id"].unique())[:pybkt_learners]
        sub = frame[(frame["skill_name"] == key) & frame["user_id"].isin(users)]
        ours, theirs = fit_bkt(sub, n_restarts=1), fit_bkt_pybkt(sub)
        true_row = truth[(truth["learner_type"] == room.learner_types[0]) & (truth["skill"] == cur.skills[0])]
        for q in PARAM_NAMES:
            pybkt_rows.append({"skill": key, "param": q, "true": float(true_row[q].iloc[0]),
                               "fit_bkt": float(ours.loc[key, q]), "pyBKT": float(theirs.loc[key, q]),
                               "n_attempts": int(len(sub))})
        timings["pybkt_check"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hyp = sample_hypotheses(n_hypotheses, seed=seed)
    weights, history = meta_learn_prior(cur, past, hyp)
    timings["meta_learn_prior"] = time.perf_counter() - t0
    top = np.argsort(weights)[::-1][:8]
    meta_prior = {"hypotheses": hyp.tolist(), "weights": weights.tolist(), "loglik_history": history,
                  "top": [{"weight": float(weights[h]), **dict(zip(PARAM_NAMES, map(float, hyp[h])))} for h in top]}

    policies = [("fixed curriculum", "baseline", FixedCurriculum(cur, block)),
                ("adaptive, from scratch", "adaptive", ThompsonPolicy(cur, hyp, None, name="adaptive, from scratch")),
                ("adaptive, meta-learned prior", "meta",
                 ThompsonPolicy(cur, hyp, weights, name="adaptive, meta-learned prior")),
                ("oracle (knows the type)", "ceiling", OraclePolicy(cur, room.type_params))]
    rows, curves, ttms, logs_by = [], {}, {}, {}
    for name, kind, pol in policies:
        t0 = time.perf_counter()
        logs = simulate(room, pol, n_test, horizon, seed=seed + 1, progress=progress)
        timings[f"simulate: {name}"] = time.perf_counter() - t0
        logs_by[name] = logs
        curve = logs.mastery_curve()                                     # [N, T + 1]
        mean = curve.mean(0)
        half = 1.96 * curve.std(0, ddof=1) / np.sqrt(n_test)
        curves[name] = {"mean": mean.tolist(), "lo": (mean - half).tolist(), "hi": (mean + half).tolist()}
        ttm = logs.time_to_mastery()
        ttms[name] = [None if np.isnan(v) else float(v) for v in ttm]
        reached, r_lo, r_hi = _ci_share(~np.isnan(ttm))
        cert_t, truly = logs.time_to_certify(threshold)
        has_est = not np.isnan(logs.estimate).all()
        certified = ~np.isnan(cert_t)
        brier = float(np.mean((logs.estimate - logs.mastered) ** 2)) if has_est else float("nan")
        rows.append({"policy": name, "kind": kind, "n_learners": n_test, "horizon": horizon,
                     "share_all_mastered": reached, "share_all_mastered_lo": r_lo, "share_all_mastered_hi": r_hi,
                     "median_time_to_mastery": _median_censored(ttm, horizon),
                     "mastery_at_20": float(mean[20]), "mastery_at_50": float(mean[min(50, horizon)]),
                     "mastery_auc": float(curve.mean()),
                     "certified_share": float(certified.mean()) if has_est else float("nan"),
                     "median_time_to_certify": _median_censored(cert_t, horizon) if has_est else float("nan"),
                     "certified_truly_mastered": float(truly[certified].mean()) if certified.any() else float("nan"),
                     "estimate_brier": brier})
        for k, t in enumerate(room.learner_types):
            sel = logs.learner_type == k
            rows[-1][f"median_time_to_mastery[{t}]"] = _median_censored(ttm[sel], horizon)
    out = {"wall_s": time.perf_counter() - t_start, "policies": rows, "curves": curves, "time_to_mastery": ttms,
           "learner_type": logs_by[policies[0][0]].learner_type.tolist(), "learner_types": list(room.learner_types),
           "bkt_recovery": recovery, "pybkt_check": pybkt_rows, "meta_prior": meta_prior, "timings": timings,
           "config": {"n_past": n_past, "past_horizon": past_horizon, "n_test": n_test, "horizon": horizon,
                      "n_hypotheses": n_hypotheses, "block": block, "threshold": threshold, "seed": seed}}
    if keep_logs:
        out.update(logs=logs_by, past_logs=past, classroom=room, policy_objects={n: p for n, _, p in policies},
                   bkt_fit=fit)
    return out



# ----------------------------------------------------------------------------- tables and figures

def cat_table(result: dict, value: str = "auc", ns: Sequence[int] = (1, 3, 5, 10, 20)) -> pd.DataFrame:
    """CAT rows as a (dataset, method) x n table of ``value`` (auc or ability_rmse)."""
    df = pd.DataFrame(result["rows"])
    df = df[df["n_items"].isin(ns)]
    order = [m[0] for m in CAT_METHODS]
    wide = df.pivot_table(index=["dataset", "method"], columns="n_items", values=value)
    wide = wide.reindex(sorted(wide.index, key=lambda k: (k[0] != "swesat", order.index(k[1]))))
    wide.columns.name = f"{value} after n items"
    return wide


_CAT_COLORS = {m[0]: c for m, c in zip(CAT_METHODS, ("#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"))}


def figure_cat(result: dict, value: str = "auc", dataset: str = "swesat", reference: bool = True):
    """``value`` (auc or ability_rmse) against the number of items asked, one band per method.

    With ``reference`` and ``value="auc"`` BOBCAT's published ASSISTments numbers are drawn as
    dotted markers (different data: context, not a target). Derived in chapter 07, section 4.
    """
    import plotly.graph_objects as go

    from course_lib.viz import band, style

    df = pd.DataFrame(result["rows"])
    df = df[df["dataset"] == dataset]
    fig = go.Figure()
    for method, _, _, _ in CAT_METHODS:
        d = df[df["method"] == method].sort_values("n_items")
        if d.empty:
            continue
        band(fig, d["n_items"], d[value], d[f"{value}_lo"], d[f"{value}_hi"], method, color=_CAT_COLORS[method])
    if reference and value == "auc":
        ref = pd.DataFrame(result.get("bobcat_reference", BOBCAT_REFERENCE))
        for (name, d), color in zip(ref.groupby("method", sort=False), ("#1f77b4", "#d62728")):
            fig.add_trace(go.Scatter(x=d["n_items"], y=d["auc"], mode="lines+markers", name=name,
                                     line=dict(dash="dot", color=color), marker=dict(symbol="diamond-open", size=9)))
    label = {"auc": "held-out AUC", "ability_rmse": "ability RMSE (2PL θ units)"}[value]
    ref_name = df["reference"].iloc[0] if len(df) else ""
    title = (f"{dataset}: {label} vs items asked" +
             (f" (error vs {ref_name})" if value == "ability_rmse" else " (95 % CI over learners)"))
    return style(fig, title, "items asked n", label)


def figure_bkt_recovery(classroom: dict):
    """Fitted vs true BKT parameters, one panel per parameter, coloured by whether the skill has prerequisites."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from course_lib.adaptive.classroom import PARAM_NAMES
    from course_lib.viz import style

    rec = pd.DataFrame(classroom["bkt_recovery"])
    fig = make_subplots(rows=1, cols=5, subplot_titles=PARAM_NAMES, horizontal_spacing=0.05)
    for c, q in enumerate(PARAM_NAMES, start=1):
        d = rec[rec["param"] == q]
        hi = float(max(d["true"].max(), d["fitted"].max())) * 1.1 + 1e-3
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", line=dict(color="#999", dash="dot"),
                                 showlegend=False, hoverinfo="skip"), row=1, col=c)
        for pre, color, name in ((False, "#1f77b4", "no prerequisites"), (True, "#d62728", "has prerequisites")):
            e = d[d["has_prerequisites"] == pre]
            fig.add_trace(go.Scatter(x=e["true"], y=e["fitted"], mode="markers", marker=dict(color=color, size=8),
                                     name=name, legendgroup=name, showlegend=c == 1,
                                     text=e["learner_type"] + "/" + e["skill"]), row=1, col=c)
    style(fig, "BKT parameters fitted from the past cohort (fit_bkt) vs the truth", "true value", "fitted value",
          height=360)
    return fig


def figure_meta_prior(classroom: dict, x: str = "learn", y: str = "slip"):
    """The meta-learned prior: hypotheses ψ_h in the (x, y) plane, size ∝ weight; true types as stars."""
    import plotly.graph_objects as go

    from course_lib.adaptive.classroom import PARAM_NAMES, default_classroom
    from course_lib.viz import style

    hyp = np.asarray(classroom["meta_prior"]["hypotheses"])
    w = np.asarray(classroom["meta_prior"]["weights"])
    i, j = PARAM_NAMES.index(x), PARAM_NAMES.index(y)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=hyp[:, i], y=hyp[:, j], mode="markers", name="flat prior (from scratch): equal weights",
                             marker=dict(size=5, color="#bbbbbb")))
    fig.add_trace(go.Scatter(x=hyp[:, i], y=hyp[:, j], mode="markers", name="meta-learned prior (size ∝ weight)",
                             marker=dict(size=4 + 60 * np.sqrt(w / w.max()), color="#ff7f0e", opacity=0.6),
                             text=[f"weight {v:.3f}" for v in w]))
    room = default_classroom()
    fig.add_trace(go.Scatter(x=room.type_params[:, i], y=room.type_params[:, j], mode="markers+text",
                             name="true learner types", text=list(room.learner_types), textposition="top center",
                             marker=dict(symbol="star", size=16, color="#d62728")))
    return style(fig, f"Prior over learners: 128 hypotheses ψ_h, {x} vs {y}", f"{x} probability", f"{y} probability")


_POLICY_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c")


def figure_mastery_curves(classroom: dict):
    """Mean share of skills truly mastered against activities, with 95 % bands, one per policy."""
    import plotly.graph_objects as go

    from course_lib.viz import band, style

    fig = go.Figure()
    for (name, c), color in zip(classroom["curves"].items(), _POLICY_COLORS):
        band(fig, list(range(len(c["mean"]))), c["mean"], c["lo"], c["hi"], name, color=color)
    n = classroom["config"]["n_test"]
    return style(fig, f"Mastery against activities ({n} new learners, same learners for every policy)",
                 "activities done", "share of the 5 skills truly mastered")


def figure_time_to_mastery(classroom: dict, by_type: bool = True):
    """Distributions of the activities needed to master every skill (last bin: not within the horizon)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from course_lib.viz import style

    horizon = classroom["config"]["horizon"]
    types = classroom["learner_types"]
    lt = np.asarray(classroom["learner_type"])
    groups = [("all learners", np.ones(len(lt), bool))] + (
        [(t, lt == k) for k, t in enumerate(types)] if by_type else [])
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[g[0] for g in groups], shared_yaxes=True)
    edges = np.arange(0, horizon + 11, 10)
    labels = [f"{a}-{a + 9}" for a in edges[:-2]] + [f"≥ {horizon} or never"]
    for c, (_, sel) in enumerate(groups, start=1):
        for (name, ttm), color in zip(classroom["time_to_mastery"].items(), _POLICY_COLORS):
            t = np.array([np.inf if v is None else v for v in ttm])[sel]
            counts = np.histogram(np.where(np.isinf(t), horizon + 5, t), bins=edges)[0]
            counts = np.append(counts[:-2], counts[-2:].sum()) if len(counts) > len(labels) else counts
            fig.add_trace(go.Bar(x=labels, y=counts / max(sel.sum(), 1), name=name, marker_color=color,
                                 legendgroup=name, showlegend=c == 1), row=1, col=c)
    style(fig, "Time to mastery of every skill (share of learners per bin of 10 activities)",
          "activities until all 5 skills were mastered", "share of learners", height=400)
    fig.update_layout(barmode="group")
    return fig


# ----------------------------------------------------------------------------- both

def run(parts: Sequence[str] = ("cat", "classroom"), seed: int = 0, progress: bool = True, **kwargs) -> dict:
    """Both studies of chapter 07: ``{"wall_s", "rows" (CAT), "bobcat_reference", "cat", "classroom"}``.

    ``kwargs`` are passed to `run_cat_study` / `run_classroom_study` by prefix: ``cat_n_steps=10``,
    ``classroom_n_test=200``. Derived in chapter 07.
    """
    unknown = set(parts) - {"cat", "classroom"}
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of ('cat', 'classroom'), got {parts}")
    t_start = time.perf_counter()
    cat_kw = {k[4:]: v for k, v in kwargs.items() if k.startswith("cat_")}
    room_kw = {k[10:]: v for k, v in kwargs.items() if k.startswith("classroom_")}
    rest = set(kwargs) - {f"cat_{k}" for k in cat_kw} - {f"classroom_{k}" for k in room_kw}
    if rest:
        raise ValueError(f"unknown options {sorted(rest)}; prefix them with cat_ or classroom_")
    out: dict = {"rows": [], "bobcat_reference": BOBCAT_REFERENCE}
    if "cat" in parts:
        out["cat"] = run_cat_study(seed=seed, progress=progress, **cat_kw)
        out["rows"] = out["cat"]["rows"]
    if "classroom" in parts:
        out["classroom"] = run_classroom_study(seed=seed, progress=progress, **room_kw)
    out["wall_s"] = time.perf_counter() - t_start
    return out


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m course_lib.experiments.adaptive_testing [--part cat|classroom|all] [--json FILE]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["cat", "classroom", "all"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the result tables (and wall time) to this file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    parts = ("cat", "classroom") if args.part == "all" else (args.part,)
    res = run(parts, seed=args.seed, progress=not args.no_progress)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 300):
        if "cat" in res:
            df = pd.DataFrame(res["rows"])
            wide = df[df["n_items"].isin([1, 3, 5, 10, 20])].pivot_table(
                index=["dataset", "method"], columns="n_items", values="auc")
            print("Held-out AUC after n items\n", wide.round(3).to_string())
            wide = df[df["n_items"].isin([1, 3, 5, 10, 20])].pivot_table(
                index=["dataset", "method"], columns="n_items", values="ability_rmse")
            print("\nAbility RMSE after n items\n", wide.round(3).to_string())
            print(f"CAT wall time: {res['cat']['wall_s']:.1f} s")
        if "classroom" in res:
            pol = pd.DataFrame(res["classroom"]["policies"]).set_index("policy")
            print("\nLearning paths\n", pol.drop(columns=["kind", "n_learners", "horizon"]).round(3).T.to_string())
            print(f"classroom wall time: {res['classroom']['wall_s']:.1f} s")
    print(f"total wall time: {res['wall_s']:.1f} s")
    if args.json:
        keep = {"wall_s": res["wall_s"], "rows": res["rows"], "bobcat_reference": res["bobcat_reference"]}
        if "cat" in res:
            keep["cat"] = {k: res["cat"][k] for k in ("wall_s", "timings", "config")}
        if "classroom" in res:
            keep["classroom"] = {k: v for k, v in res["classroom"].items()
                                 if k not in ("logs", "past_logs", "classroom", "policy_objects", "bkt_fit")}
        with open(args.json, "w") as f:
            json.dump(_json_safe(keep), f, indent=1)
    return res


if __name__ == "__main__":
    main()
