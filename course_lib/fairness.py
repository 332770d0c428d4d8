"""A fairness audit of personalised predictions: per-group metrics, gaps and their bootstrap CIs.

Derived in chapter 09, section 3. A learner model is audited by computing each metric *per group*
of a sensitive attribute (gender, age group, department) with fairlearn's ``MetricFrame``, and the
*gap*: the largest minus the smallest group value (``MetricFrame.difference()``). Confidence
intervals resample *learners* with `course_lib.metrics.learner_resamples` (the same draws as every
other CI of the course), so the answers of one learner stay together; the same resamples serve two
methods at once, which makes the *difference of their gaps* a paired estimate: does method A narrow
(< 0) or widen (> 0) the gap of method B?

Mitigation (section 3.3): `balanced_weights` gives every learner the weight 1 / (size of their
group), so that a task sampler drawing learners in proportion to it (``learner_weights`` of
`course_lib.models.meta_irt.train_meta_irt`) meets every group equally often in meta-training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from course_lib import metrics

__all__ = ["BINARY_METRICS", "RATING_METRICS", "require_column", "group_labels", "metric_frame", "group_metrics",
           "gap_difference", "balanced_weights"]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC, or NaN where a group (or a resample of it) holds only one class."""
    return metrics.auc(y, p) if 0 < np.sum(y) < len(y) else float("nan")


def _signed_error(y: np.ndarray, p: np.ndarray) -> float:
    """Mean prediction minus mean answer: > 0 over-predicts the group, < 0 under-predicts it."""
    return float(np.mean(np.asarray(p, float) - np.asarray(y, float)))


#: Metrics of P(correct) predictions of binary answers (chapter 05's cold start).
BINARY_METRICS: dict[str, Metric] = {"auc": _safe_auc, "ece": metrics.expected_calibration_error, "mae": metrics.mae}
#: Metrics of predicted ratings (chapter 06's recommendation, 1-5 stars).
RATING_METRICS: dict[str, Metric] = {"mae": metrics.mae, "signed_error": _signed_error}


def require_column(frame: pd.DataFrame, column: str, what: str = "group attribute") -> pd.Series:
    """``frame[column]``, or a ValueError naming the missing column and listing the available ones."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame holding the {what}, got {type(frame).__name__}")
    if column not in frame.columns:
        raise ValueError(f"the {what} column {column!r} is not in the data; available columns: "
                         f"{sorted(map(str, frame.columns))}. Pass one of them as the group column.")
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"the {what} column {column!r} has {int(values.isna().sum())} missing values; "
                         "fill them (e.g. with 'unknown') or drop those learners before the audit")
    return values


def group_labels(frame: pd.DataFrame, column: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
    """The labels of ``column`` for the learners at positions ``rows`` of ``frame`` (as strings)."""
    return require_column(frame, column).astype(str).to_numpy()[np.asarray(rows, dtype=np.int64)]


def _check(y, p, groups, learner) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y, p = (np.asarray(v, dtype=float).ravel() for v in (y, p))
    groups, learner = np.asarray(groups).ravel(), np.asarray(learner).ravel()
    if not len(y) == len(p) == len(groups) == len(learner) or len(y) == 0:
        raise ValueError(f"y, p, groups and learner must be non-empty and of equal length (one entry per "
                         f"scored answer); got {len(y)}, {len(p)}, {len(groups)}, {len(learner)}")
    if np.isnan(y).any() or np.isnan(p).any():
        raise ValueError("NaN in answers or predictions; drop unanswered items before the audit")
    return y, p, groups, learner


def metric_frame(y, p, groups, metric_fns: Mapping[str, Metric] = BINARY_METRICS):
    """fairlearn's ``MetricFrame`` of ``metric_fns`` on flat answers ``y``, predictions ``p`` and ``groups``."""
    from fairlearn.metrics import MetricFrame

    return MetricFrame(metrics=dict(metric_fns), y_true=np.asarray(y, float), y_pred=np.asarray(p, float),
                       sensitive_features=pd.Series(np.asarray(groups), name="group"))


def _by_group(y: np.ndarray, p: np.ndarray, groups: np.ndarray, labels: np.ndarray,
              metric_fns: Mapping[str, Metric]) -> np.ndarray:
    """``[groups, metrics]``: what ``MetricFrame.by_group`` holds, as a plain array (NaN for an absent group)."""
    out = np.full((len(labels), len(metric_fns)), np.nan)
    for i, g in enumerate(labels):
        in_g = groups == g
        if in_g.any():
            out[i] = [fn(y[in_g], p[in_g]) for fn in metric_fns.values()]
    return out


def _resampled(y, p, groups, learner, labels, metric_fns, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, groups, metrics]`` on the learner-bootstrap resamples of `metrics.learner_resamples`.

    The resamples call the metric functions per group directly (the numbers ``MetricFrame`` would
    give, checked in tests/test_fairness.py): a MetricFrame per resample costs ~30x more.
    """
    ids, lid = np.unique(learner, return_inverse=True)
    rows_of = [np.flatnonzero(lid == i) for i in range(len(ids))]
    out = np.empty((n_boot, len(labels), len(metric_fns)))
    for b, counts in enumerate(metrics.learner_resamples(len(ids), n_boot, seed).astype(int)):
        ix = np.concatenate([np.tile(rows_of[i], c) for i, c in enumerate(counts) if c])
        out[b] = _by_group(y[ix], p[ix], groups[ix], labels, metric_fns)
    return out


def _gaps(by_group: np.ndarray) -> np.ndarray:
    """max − min over the groups axis (the second to last), ignoring groups without a value."""
    with np.errstate(invalid="ignore"):
        return np.nanmax(by_group, axis=-2) - np.nanmin(by_group, axis=-2)


def group_metrics(y, p, groups, learner, metric_fns: Mapping[str, Metric] = BINARY_METRICS, *,
                  n_boot: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per-group metrics and the gap (max − min over groups), each with a learner-bootstrap CI.

    ``y``, ``p``, ``groups``, ``learner``: one entry per scored answer (answer, prediction, group
    label, learner id). Returns a long table: ``group`` (a label, or ``"gap"``), ``metric``,
    ``value``, ``lo``, ``hi``, ``n_learners``, ``n_answers``. Derived in chapter 09, section 3.
    """
    y, p, groups, learner = _check(y, p, groups, learner)
    mf = metric_frame(y, p, groups, metric_fns)
    labels = mf.by_group.index.to_numpy()
    q = [(1 - level) / 2, (1 + level) / 2]
    nan = np.full((2, len(labels), len(metric_fns)), np.nan)
    boots = _resampled(y, p, groups, learner, labels, metric_fns, n_boot, seed) if n_boot else None
    ci = np.nanquantile(boots, q, axis=0) if n_boot else nan                    # [2, groups, metrics]
    gap_ci = np.nanquantile(_gaps(boots), q, axis=0) if n_boot else nan[:, 0]   # [2, metrics]
    rows = []
    for i, g in enumerate(labels):
        in_g = groups == g
        for j, name in enumerate(metric_fns):
            rows.append({"group": str(g), "metric": name, "value": float(mf.by_group.loc[g, name]),
                         "lo": float(ci[0, i, j]), "hi": float(ci[1, i, j]),
                         "n_learners": int(len(np.unique(learner[in_g]))), "n_answers": int(in_g.sum())})
    gaps = mf.difference()
    for j, name in enumerate(metric_fns):
        rows.append({"group": "gap", "metric": name, "value": float(gaps[name]), "lo": float(gap_ci[0, j]),
                     "hi": float(gap_ci[1, j]), "n_learners": int(len(np.unique(learner))), "n_answers": int(len(y))})
    return pd.DataFrame(rows)


def gap_difference(y, p_a, p_b, groups, learner, metric_fns: Mapping[str, Metric] = BINARY_METRICS, *,
                   n_boot: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Gap of method A minus gap of method B on the same answers, with a paired learner-bootstrap CI.

    Both methods are scored on the same resampled learners, so the CI is that of the difference
    (< 0: A narrows B's gap; > 0: A widens it). Returns ``metric``, ``diff``, ``lo``, ``hi``.
    Derived in chapter 09, section 3.
    """
    y, p_a, groups, learner = _check(y, p_a, groups, learner)
    p_b = _check(y, p_b, groups, learner)[1]
    labels = np.unique(groups)
    point = (_gaps(_by_group(y, p_a, groups, labels, metric_fns))
             - _gaps(_by_group(y, p_b, groups, labels, metric_fns)))
    q = [(1 - level) / 2, (1 + level) / 2]
    if n_boot:
        diffs = (_gaps(_resampled(y, p_a, groups, learner, labels, metric_fns, n_boot, seed))
                 - _gaps(_resampled(y, p_b, groups, learner, labels, metric_fns, n_boot, seed)))
        lo, hi = np.nanquantile(diffs, q, axis=0)
    else:
        lo = hi = np.full(len(metric_fns), np.nan)
    return pd.DataFrame({"metric": list(metric_fns), "diff": point, "lo": lo, "hi": hi})


def balanced_weights(groups: Sequence | np.ndarray) -> Tensor:
    """Sampling weight 1 / n_g for each learner of group g (sums to the number of groups): ``[learners]``.

    Drawing meta-batch learners in proportion to these weights makes each group equally likely
    per draw, whatever its size (group-balanced task sampling). Derived in chapter 09, section 3.3.
    """
    labels = np.asarray(groups).ravel()
    if labels.size == 0:
        raise ValueError("no learners to weight: groups is empty")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return torch.as_tensor(1.0 / counts[inverse], dtype=torch.float32)
