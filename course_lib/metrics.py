"""Evaluation metrics, computed per learner and summarised with 95 % confidence intervals.

Derived in chapter 01 (section on evaluation) and used by chapters 05-07. Thin wrappers around
scikit-learn so that every chapter reports the same numbers the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = ["row_auc", "auc", "auc_from_counts", "binary_cross_entropy", "log_loss", "expected_calibration_error", "mae",
           "rmse", "ndcg_at_k", "mean_ci", "proportion_ci", "censored_median", "learner_resamples", "bootstrap_ci",
           "pooled_bootstrap", "per_learner_metrics", "query_log_loss", "abs_correlation",
           "ndcg_at_k_rows", "bootstrap_mean_ci", "paired_differences", "r_squared", "paired_auc_difference"]


def _as_arrays(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true has {y_true.size} values but the predictions have {y_prob.size}")
    if y_true.size == 0:
        raise ValueError("no predictions to score (empty query set?)")
    if np.isnan(y_true).any() or np.isnan(y_prob).any():
        raise ValueError("NaN in targets or predictions; drop missing answers before scoring")
    return y_true, y_prob


def auc(y_true, y_prob) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``); NaN if only one class is present."""
    y_true, y_prob = _as_arrays(y_true, y_prob)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(y_true, y_prob))


def auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC from (weighted) counts of positives / negatives per score bin, bins in increasing score order.

    ``pos``, ``neg``: ``[..., bins]``; ties (same bin) count one half; NaN when a class is absent.
    Returns ``[...]``. The O(n) kernel behind the learner-bootstrap AUC intervals of chapters 05 and 07.
    """
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    below = np.cumsum(neg, -1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(-1) / (pos.sum(-1) * neg.sum(-1))


def binary_cross_entropy(y_true: np.ndarray, y_prob: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-answer negative log-likelihood −[y log p + (1 − y) log(1 − p)], p clipped to [eps, 1 − eps].

    Element-wise, any shape; no validation (the kernel behind `log_loss` and `pooled_bootstrap`).
    """
    p = np.clip(np.asarray(y_prob, float), eps, 1 - eps)
    y = np.asarray(y_true, float)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(y_true, y_prob, eps: float = 1e-6) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 − eps]); the one log loss of the course.

    ``y_true`` holds 0/1 answers and ``y_prob`` probabilities in [0, 1]; anything else is a ValueError.
    """
    y_true, y_prob = _as_arrays(y_true, y_prob)
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ValueError(f"log_loss needs 0/1 answers, got the values {sorted(set(np.unique(y_true).tolist()))[:6]}; "
                         "recode answers as 0 (wrong) / 1 (right) and drop missing ones")
    if not ((y_prob >= 0) & (y_prob <= 1)).all():
        raise ValueError(f"log_loss needs probabilities in [0, 1], got values in [{y_prob.min():.3g}, {y_prob.max():.3g}]; "
                         "pass sigmoid(logits), not logits")
    return float(binary_cross_entropy(y_true, y_prob, eps).mean())


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE: the |accuracy − confidence| gap averaged over equal-width probability bins, weighted by count."""
    y_true, y_prob = _as_arrays(y_true, y_prob)
    bins = np.clip((y_prob * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.mean() * abs(y_true[sel].mean() - y_prob[sel].mean())
    return float(total)


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    y_true, y_pred = _as_arrays(y_true, y_pred)
    return float(skm.mean_absolute_error(y_true, y_pred))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y_true, y_pred = _as_arrays(y_true, y_pred)
    return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))


def ndcg_at_k(y_true, y_score, k: int = 3) -> float:
    """nDCG@k of one user's list: ``y_true`` relevances (e.g. ratings), ``y_score`` predicted scores.

    Uses ``sklearn.metrics.ndcg_score`` (gain = relevance, log2 discount). Chapter 06.
    """
    y_true, y_score = _as_arrays(y_true, y_score)
    if y_true.size < 2:
        raise ValueError("nDCG needs at least 2 items in the list")
    return float(skm.ndcg_score(y_true[None, :], y_score[None, :], k=k))


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation confidence interval over units (e.g. one value per learner)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("no finite values to average")
    from scipy.stats import norm

    m = float(v.mean())
    half = float(norm.ppf(0.5 + level / 2) * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
    return m, m - half, m + half


def proportion_ci(hits, level: float = 0.95) -> tuple[float, float, float]:
    """Share of True in ``hits`` and its normal-approximation (Wald) interval m ± z √(m(1 − m)/n)."""
    x = np.asarray(hits, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("no values to count")
    from scipy.stats import norm

    m = float(x.mean())
    half = float(norm.ppf(0.5 + level / 2)) * np.sqrt(max(m * (1 - m), 1e-12) / x.size)
    return m, m - half, m + half


def censored_median(times) -> float:
    """Median of times where NaN = the event did not happen (counted as later than any time).

    NaN when more than half are censored (the median is then beyond the horizon). Chapter 07.
    """
    t = np.asarray(times, dtype=float)
    med = float(np.median(np.where(np.isnan(t), np.inf, t)))
    return med if np.isfinite(med) else float("nan")


def learner_resamples(n_learners: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """How often each learner is drawn in each bootstrap resample: ``[n_boot, n_learners]`` counts.

    Resample b draws ``n_learners`` learners with replacement from ``np.random.default_rng(seed)``
    (the draws are made in order, one resample after the other): the same draws for every CI here.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, n_learners))
    for b in range(n_boot):
        out[b] = np.bincount(rng.integers(0, n_learners, n_learners), minlength=n_learners)
    return out


def bootstrap_ci(metric, groups: list[tuple[np.ndarray, np.ndarray]], n_boot: int = 200,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """A pooled metric over learners and its bootstrap CI, resampling *learners* (not answers).

    ``groups`` is one ``(y_true, y_pred)`` pair per learner; ``metric(y_true, y_pred)`` is applied to
    the concatenation. Resampling whole learners respects the dependence within a learner. Any
    metric, O(n) per resample in Python; for AUC and log loss use `pooled_bootstrap` (same draws,
    same numbers, one matrix product for all resamples).
    """
    if not groups:
        raise ValueError("no learners to score")
    y = [np.asarray(g[0], float).ravel() for g in groups]
    p = [np.asarray(g[1], float).ravel() for g in groups]
    point = metric(np.concatenate(y), np.concatenate(p))
    stats = []
    for counts in learner_resamples(len(groups), n_boot, seed).astype(int):
        ix = np.repeat(np.arange(len(groups)), counts)
        stats.append(metric(np.concatenate([y[i] for i in ix]), np.concatenate([p[i] for i in ix])))
    lo, hi = np.nanquantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(point), float(lo), float(hi)


def bootstrap_mean_ci(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of one value per learner and its percentile bootstrap CI, resampling learners.

    For a *paired* comparison pass the per-learner differences (method A − method B on the same
    learner and query set): the CI then accounts for the learners being shared. ``values [learners]``;
    the resamples are `learner_resamples`'. Derived in chapter 06, section 11.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2 or np.isnan(v).any():
        raise ValueError(f"need at least 2 finite per-learner values, got {v.size} (NaN: {bool(np.isnan(v).any())})")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    means = learner_resamples(v.size, n_boot, seed) @ v / v.size
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def paired_differences(per_learner: dict[str, np.ndarray], references: tuple[str, ...], n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0) -> list[dict]:
    """Every method minus every reference, learner by learner, with `bootstrap_mean_ci` intervals.

    ``per_learner``: method -> ``[learners]`` metric values (the same learners in the same order);
    references missing from it are skipped. Returns rows ``{"method", "versus", "diff", "lo", "hi"}``.
    Chapter 06, section 11.
    """
    rows = []
    for name, v in per_learner.items():
        for ref in (r for r in references if r != name and r in per_learner):
            d, lo, hi = bootstrap_mean_ci(np.asarray(v) - np.asarray(per_learner[ref]), n_boot, level, seed)
            rows.append({"method": name, "versus": ref, "diff": d, "lo": lo, "hi": hi})
    return rows


def r_squared(y_true, y_pred) -> float:
    """Share of the variance of ``y_true`` that ``y_pred`` explains: 1 − Σ(y − ŷ)² / Σ(y − ȳ)².

    Out of sample it can be negative (worse than predicting the mean). Chapter 06, section 11.
    """
    y_true, y_pred = _as_arrays(y_true, y_pred)
    total = float(((y_true - y_true.mean()) ** 2).sum())
    if total == 0:
        raise ValueError("y_true is constant: R² is undefined")
    return 1.0 - float(((y_true - y_pred) ** 2).sum()) / total


# --------------------------------------------------------------------- per learner, vectorised (chapter 01)

def _as_float64(values) -> np.ndarray:
    """A float64 numpy array from a tensor (any device) or an array-like."""
    if hasattr(values, "detach"):
        return values.detach().double().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def per_learner_metrics(pred, y, truth, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Per learner (row): query log-loss, accuracy, AUC and RMSE to the true probabilities.

    Vectorised over learners; each row gives the same numbers as `log_loss` and `auc` on that
    learner (AUC is NaN for a learner whose query answers are all right or all wrong; `mean_ci`
    skips those). ``pred``, ``y``, ``truth``: tensors or arrays ``[learners, n_query]`` each.
    Derived in chapter 01, section 4.
    """
    from scipy.stats import rankdata

    p, y, t = (_as_float64(v) for v in (pred, y, truth))
    if p.shape != y.shape or p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred, y and truth must share one [learners, n_query] shape; got "
                         f"{p.shape}, {y.shape}, {t.shape}")
    if np.isnan(p).any() or np.isnan(y).any():
        raise ValueError("NaN in predictions or answers; drop missing answers before scoring")
    ll = binary_cross_entropy(y, p, eps).mean(1)
    ranks = rankdata(p, axis=1)  # average ranks for ties, as roc_auc_score
    n_pos = y.sum(1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc_ = ((ranks * y).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc_[(n_pos == 0) | (n_neg == 0)] = np.nan
    return {"log_loss": ll, "accuracy": ((p > 0.5) == (y > 0.5)).mean(1), "auc": auc_,
            "rmse_to_truth": np.sqrt(((p - t) ** 2).mean(1))}


def query_log_loss(pred, y_query, query_mask=None, eps: float = 1e-6) -> float:
    """Mean query log-loss over every real (unmasked) query answer of a batch of tasks.

    Torch tensors ``pred, y_query [tasks, n_query]`` (probabilities, 0/1), ``query_mask`` bool
    (None = all real). The selection criterion when α and steps are tuned on validation learners.
    Derived in chapter 01, section 3.
    """
    import torch

    if pred.shape != y_query.shape:
        raise ValueError(f"pred and y_query must share one [tasks, n_query] shape; got "
                         f"{tuple(pred.shape)} and {tuple(y_query.shape)}")
    mask = torch.ones_like(y_query, dtype=torch.bool) if query_mask is None else query_mask
    ll = torch.nn.functional.binary_cross_entropy(pred.clamp(eps, 1 - eps), y_query, reduction="none")
    return float((ll * mask).sum() / mask.sum())


def abs_correlation(a, b) -> float:
    """|Pearson correlation| of two vectors ``[n]``: recovery of a quantity whose sign is arbitrary
    (a learned embedding against the true hidden item property). Derived in chapter 01, section 6."""
    import torch

    a, b = (torch.as_tensor(v).detach().double().cpu() for v in (a, b))
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"a and b must be vectors of one length, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float(abs(torch.corrcoef(torch.stack([a, b]))[0, 1]))


def ndcg_at_k_rows(y_true, y_score, k: int = 3) -> np.ndarray:
    """nDCG@k of every row (one user's list each): ``[users, n] -> [users]``. Chapter 06.

    The definition of :func:`ndcg_at_k` (scikit-learn's: gain = relevance, log2 discount, tied
    scores share their gain), vectorised over rows; rows with tied scores go through
    :func:`ndcg_at_k`, so the two agree everywhere.
    """
    y_true = np.asarray(y_true, float)
    y_score = np.asarray(y_score, float)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_score must both be [students, n], got {y_true.shape} and {y_score.shape}")
    k = min(k, y_true.shape[1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-y_score, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(y_true, order, 1) * discount).sum(1)
    ideal = (-np.sort(-y_true, axis=1)[:, :k] * discount).sum(1)
    out = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    tied = (np.diff(np.sort(y_score, axis=1), axis=1) == 0).any(1)
    for i in np.nonzero(tied)[0]:
        out[i] = ndcg_at_k(y_true[i], y_score[i], k)
    return out


def pooled_bootstrap(y, p, learner, *, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                     score_bins: int | None = None) -> dict[str, float]:
    """Pooled AUC and log loss with 95 % CIs from a bootstrap over *learners*, by counting.

    ``y``, ``p``, ``learner``: flat arrays (answer 0/1, predicted P(correct), learner id). The
    resamples are `learner_resamples`' (the same as `bootstrap_ci`'s, so the intervals are the same
    numbers). Every learner's answers are summarised once as counts of right / wrong per distinct
    score; a resample is then one sparse matrix product and `auc_from_counts`. With ``score_bins``
    the distinct scores are merged into that many equal-size rank bins (less memory; ties inside a
    bin move the resampled AUC by < 1 / (2 · score_bins)); the point estimates stay exact.
    Returns auc, auc_lo, auc_hi, logloss, logloss_lo, logloss_hi. Derived in chapter 05, section 6.
    """
    y, p, learner = (np.asarray(v).ravel() for v in (y, p, learner))
    if not (len(y) == len(p) == len(learner)) or len(y) == 0:
        raise ValueError("y, p and learner must be non-empty arrays of the same length")
    y, p = _as_arrays(y, p)
    ids, lid = np.unique(learner, return_inverse=True)
    uniq, inv = np.unique(p, return_inverse=True)
    point_auc = float(auc_from_counts(np.bincount(inv, weights=y), np.bincount(inv, weights=1 - y)))
    if score_bins is not None and len(uniq) > score_bins:
        inv = (inv * score_bins) // len(uniq)
    shape = (len(ids), int(inv.max()) + 1)
    nll = binary_cross_entropy(y, p)
    nll_sum = np.bincount(lid, weights=nll, minlength=len(ids))
    count = np.bincount(lid, minlength=len(ids)).astype(float)
    w = learner_resamples(len(ids), n_boot, seed)                     # [n_boot, learners]
    q = [(1 - level) / 2, (1 + level) / 2]
    if n_boot:
        aucs = _resampled_aucs(y, inv, lid, w, shape)
        lls = w @ nll_sum / (w @ count)
        (auc_lo, auc_hi), (ll_lo, ll_hi) = np.nanquantile(aucs, q), np.nanquantile(lls, q)
    else:
        auc_lo = auc_hi = ll_lo = ll_hi = float("nan")
    return {"auc": point_auc, "auc_lo": float(auc_lo), "auc_hi": float(auc_hi), "logloss": float(nll.mean()),
            "logloss_lo": float(ll_lo), "logloss_hi": float(ll_hi)}


def _resampled_aucs(y: np.ndarray, inv: np.ndarray, lid: np.ndarray, w: np.ndarray, shape: tuple) -> np.ndarray:
    """Pooled AUC of every resample (rows of ``w [n_boot, learners]``) from counts per learner x score."""
    from scipy import sparse

    h_pos = sparse.csr_matrix((y, (lid, inv)), shape=shape)          # learner x score: right answers
    h_neg = sparse.csr_matrix((1 - y, (lid, inv)), shape=shape)      # learner x score: wrong answers
    return auc_from_counts(np.asarray((h_pos.T @ w.T).T), np.asarray((h_neg.T @ w.T).T))


def paired_auc_difference(y, p_a, p_b, learner, *, n_boot: int = 200, level: float = 0.95,
                          seed: int = 0, score_bins: int | None = None) -> dict[str, float]:
    """Pooled AUC of ``p_a`` minus that of ``p_b`` on the same answers, with a *paired* learner-bootstrap CI.

    Both methods are scored on the same resamples of learners (`learner_resamples`), so the
    interval is that of the difference, narrower than comparing two separate intervals. Flat arrays
    ``y`` (0/1), ``p_a``, ``p_b`` (P(correct)), ``learner`` (ids). ``score_bins``: as in
    `pooled_bootstrap` (the resamples count answers per rank bin instead of per distinct score: far less
    time and memory on 10⁵ answers; the point estimate stays exact). Returns diff, diff_lo, diff_hi.
    Derived in chapter 07, section 4b.
    """
    y, p_a, p_b, learner = (np.asarray(v).ravel() for v in (y, p_a, p_b, learner))
    if not (len(y) == len(p_a) == len(p_b) == len(learner)) or len(y) == 0:
        raise ValueError("y, p_a, p_b and learner must be non-empty arrays of the same length")
    y, p_a = _as_arrays(y, p_a)
    _, p_b = _as_arrays(y, p_b)
    ids, lid = np.unique(learner, return_inverse=True)
    w = learner_resamples(len(ids), n_boot, seed)
    stats = []
    for p in (p_a, p_b):
        uniq, inv = np.unique(p, return_inverse=True)
        if score_bins is not None and len(uniq) > score_bins:
            inv = (inv * score_bins) // len(uniq)
        stats.append((auc(y, p), _resampled_aucs(y, inv, lid, w, (len(ids), int(inv.max()) + 1))))
    diff = stats[0][1] - stats[1][1]
    lo, hi = np.nanquantile(diff, [(1 - level) / 2, (1 + level) / 2]) if n_boot else (float("nan"),) * 2
    return {"diff": stats[0][0] - stats[1][0], "diff_lo": float(lo), "diff_hi": float(hi)}


def row_auc(y_true, y_score, mask=None) -> np.ndarray:
    """AUC of each row (one learner's query answers) over its real entries: ``[rows]``.

    ``y_true``, ``y_score``, ``mask`` ``[rows, n]`` (tensors or arrays; mask True = real, None = all).
    Ties count one half, as in `auc`; a row whose real answers are all right or all wrong gets NaN.
    The within-learner ranking score of chapter 03, section 8 (which items will *this* learner get right).
    """
    from scipy.stats import rankdata

    y, s = _as_float64(y_true), _as_float64(y_score)
    m = np.ones_like(y, dtype=bool) if mask is None else _as_float64(mask) > 0.5
    if y.shape != s.shape or y.shape != m.shape or y.ndim != 2:
        raise ValueError(f"y_true, y_score and mask must share one [rows, n] shape; got {y.shape}, {s.shape}, {m.shape}")
    if np.isnan(s[m]).any():
        raise ValueError("NaN in the scores; check the model's predictions")
    out = np.full(len(y), np.nan)
    for i in range(len(y)):
        yi, si = y[i, m[i]], s[i, m[i]]
        n_pos = yi.sum()
        n_neg = len(yi) - n_pos
        if n_pos and n_neg:
            out[i] = ((rankdata(si) * yi).sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out
