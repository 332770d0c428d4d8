"""Plotly helpers shared by several chapters: one look for every figure, curves with bands.

The shared look (`style`, `band`) and the figures of the chapter studies (each takes the study's
`course_lib.experiments.common.Result`, so a figure can be redrawn from a saved JSON).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def style(fig: go.Figure, title: str, x: str, y: str, height: int = 420) -> go.Figure:
    """Give ``fig`` a title, axis labels (with units) and the course's layout (every chapter, from 01).

    The legend sits under the x axis: above the plot, a legend that wraps onto a second row runs into
    a long title (plotly grows the bottom margin to fit it, so the plot keeps its axis labels).
    """
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, template="plotly_white",
                      legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0),
                      margin=dict(l=60, r=20, t=60, b=50))
    return fig


def band(fig: go.Figure, x: Sequence[float], mean: Sequence[float], lo: Sequence[float],
         hi: Sequence[float], name: str, color: str | None = None, dash: str | None = None) -> go.Figure:
    """Add a line ``mean`` with a shaded confidence band ``[lo, hi]`` to ``fig`` (chapters 01, 05-07).

    x, mean, lo, hi: sequences of the same length ``[points]``; ``lo``/``hi`` usually from
    ``course_lib.metrics.bootstrap_ci``.
    """
    if not len(x) == len(mean) == len(lo) == len(hi):
        raise ValueError(f"band: x, mean, lo and hi need the same length, got {len(x)}, {len(mean)}, "
                         f"{len(lo)}, {len(hi)}")
    color = color or PALETTE[len(fig.data) // 2 % len(PALETTE)]
    x = list(x)
    fig.add_trace(go.Scatter(x=x + x[::-1], y=list(hi) + list(lo)[::-1], fill="toself", mode="lines", line=dict(width=0),
                             fillcolor=color, opacity=0.18, hoverinfo="skip", showlegend=False,
                             legendgroup=name))
    fig.add_trace(go.Scatter(x=x, y=list(mean), mode="lines+markers", name=name, legendgroup=name,
                             line=dict(color=color, dash=dash)))
    return fig


# ----------------------------------------------------------------------------- chapter 07 figures

_CAT_COLORS = ("#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728")
_POLICY_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c")


def figure_cat(result, value: str = "auc", dataset: str = "swesat", reference: bool = True) -> go.Figure:
    """``value`` (auc or ability_rmse) against the number of items asked, one band per CAT method.

    ``result``: `course_lib.experiments.adaptive_testing.run`'s. With ``reference`` and
    ``value="auc"`` BOBCAT's published ASSISTments numbers are drawn as dotted markers (different
    data: context, not a target). Derived in chapter 07, section 4.
    """
    import pandas as pd

    rows = pd.DataFrame(result.rows)
    colors = dict(zip(rows["method"].unique(), _CAT_COLORS * 2))
    df = rows[rows["dataset"] == dataset]
    fig = go.Figure()
    for method, d in df.groupby("method", sort=False):
        d = d.sort_values("n_items")
        band(fig, d["n_items"], d[value], d[f"{value}_lo"], d[f"{value}_hi"], method, color=colors[method])
    if reference and value == "auc":
        ref = pd.DataFrame(result.details["bobcat_reference"])
        for (name, d), color in zip(ref.groupby("method", sort=False), ("#1f77b4", "#d62728")):
            fig.add_trace(go.Scatter(x=d["n_items"], y=d["auc"], mode="lines+markers", name=name,
                                     line=dict(dash="dot", color=color), marker=dict(symbol="diamond-open", size=9)))
    label = {"auc": "held-out AUC", "ability_rmse": "ability RMSE (2PL θ units)"}[value]
    ref_name = df["reference"].iloc[0] if len(df) else ""
    title = (f"{dataset}: {label} vs items asked" +
             (f" (error vs {ref_name})" if value == "ability_rmse" else " (95 % CI over learners)"))
    return style(fig, title, "items asked n", label)


def figure_bkt_recovery(result) -> go.Figure:
    """Fitted vs true BKT parameters, one panel per parameter, coloured by whether the skill has
    prerequisites. ``result``: `course_lib.experiments.learning_paths.run`'s. Chapter 07, section 6."""
    import pandas as pd
    from plotly.subplots import make_subplots

    names = result.details["param_names"]
    rec = pd.DataFrame(result.details["bkt_recovery"])
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.05)
    for c, q in enumerate(names, start=1):
        d = rec[rec["param"] == q]
        hi = float(max(d["true"].max(), d["fitted"].max())) * 1.1 + 1e-3
        fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", line=dict(color="#999", dash="dot"),
                                 showlegend=False, hoverinfo="skip"), row=1, col=c)
        for pre, color, name in ((False, "#1f77b4", "no prerequisites"), (True, "#d62728", "has prerequisites")):
            e = d[d["has_prerequisites"] == pre]
            fig.add_trace(go.Scatter(x=e["true"], y=e["fitted"], mode="markers", marker=dict(color=color, size=8),
                                     name=name, legendgroup=name, showlegend=c == 1,
                                     text=e["learner_type"] + "/" + e["skill"]), row=1, col=c)
    return style(fig, "BKT parameters fitted from the past cohort (fit_bkt) vs the truth", "true value",
                 "fitted value", height=360)


def figure_meta_prior(result, x: str = "learn", y: str = "slip") -> go.Figure:
    """The meta-learned prior: hypotheses ψ_h in the (x, y) plane, size ∝ weight; true types as stars.
    ``result``: `course_lib.experiments.learning_paths.run`'s. Chapter 07, section 8."""
    import numpy as np

    names = result.details["param_names"]
    hyp = np.asarray(result.details["meta_prior"]["hypotheses"])
    w = np.asarray(result.details["meta_prior"]["weights"])
    types = np.asarray(result.details["true_types"])
    i, j = names.index(x), names.index(y)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=hyp[:, i], y=hyp[:, j], mode="markers", name="flat prior (from scratch): equal weights",
                             marker=dict(size=5, color="#bbbbbb")))
    fig.add_trace(go.Scatter(x=hyp[:, i], y=hyp[:, j], mode="markers", name="meta-learned prior (size ∝ weight)",
                             marker=dict(size=4 + 60 * np.sqrt(w / w.max()), color="#ff7f0e", opacity=0.6),
                             text=[f"weight {v:.3f}" for v in w]))
    fig.add_trace(go.Scatter(x=types[:, i], y=types[:, j], mode="markers+text", name="true learner types",
                             text=list(result.details["learner_types"]), textposition="top center",
                             marker=dict(symbol="star", size=16, color="#d62728")))
    return style(fig, f"Prior over learners: {len(hyp)} hypotheses ψ_h, {x} vs {y}", f"{x} probability",
                 f"{y} probability")


def figure_mastery_curves(result) -> go.Figure:
    """Mean share of skills truly mastered against activities, with 95 % bands, one per policy.
    ``result``: `course_lib.experiments.learning_paths.run`'s. Chapter 07, section 9."""
    fig = go.Figure()
    for (name, c), color in zip(result.details["curves"].items(), _POLICY_COLORS):
        band(fig, list(range(len(c["mean"]))), c["mean"], c["lo"], c["hi"], name, color=color)
    n_skills = len({row["skill"] for row in result.details["bkt_recovery"]})
    return style(fig, f"Mastery against activities ({result.config['n_test']} new learners, same learners for "
                      "every policy)", "activities done", f"share of the {n_skills} skills truly mastered")


def figure_time_to_mastery(result, by_type: bool = True) -> go.Figure:
    """Distributions of the activities needed to master every skill (last bin: not within the horizon).
    ``result``: `course_lib.experiments.learning_paths.run`'s. Chapter 07, section 9."""
    import numpy as np
    from plotly.subplots import make_subplots

    horizon = result.config["horizon"]
    lt = np.asarray(result.details["learner_type"])
    groups = [("all learners", np.ones(len(lt), bool))] + (
        [(t, lt == k) for k, t in enumerate(result.details["learner_types"])] if by_type else [])
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[g[0] for g in groups], shared_yaxes=True)
    edges = np.arange(0, horizon + 11, 10)
    labels = [f"{a}-{a + 9}" for a in edges[:-2]] + [f"≥ {horizon} or never"]
    for c, (_, sel) in enumerate(groups, start=1):
        for (name, ttm), color in zip(result.details["time_to_mastery"].items(), _POLICY_COLORS):
            t = np.array([np.inf if v is None else v for v in ttm])[sel]
            counts = np.histogram(np.where(np.isinf(t), horizon + 5, t), bins=edges)[0]
            counts = np.append(counts[:-2], counts[-2:].sum()) if len(counts) > len(labels) else counts
            fig.add_trace(go.Bar(x=labels, y=counts / max(sel.sum(), 1), name=name, marker_color=color,
                                 legendgroup=name, showlegend=c == 1), row=1, col=c)
    style(fig, "Time to mastery of every skill (share of learners per bin of 10 activities)",
          "activities until all skills were mastered", "share of learners", height=400)
    fig.update_layout(barmode="group")
    return fig
