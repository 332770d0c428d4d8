"""Plotly helpers shared by several chapters: one look for every figure, curves with bands.

Chapter-specific figures live with their chapter's experiment module; only what two or more
chapters use belongs here.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def style(fig: go.Figure, title: str, x: str, y: str, height: int = 420) -> go.Figure:
    """Give ``fig`` a title, axis labels (with units) and the course's layout (every chapter, from 01)."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, template="plotly_white",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
                      margin=dict(l=60, r=20, t=80, b=50))
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
