"""Fitting Bayesian Knowledge Tracing from logs: our vectorised EM and the pyBKT library (chapter 07, section 5).

`fit_bkt` is Baum-Welch vectorised over learners (the same E- and M-steps as pyBKT); `fit_bkt_pybkt`
calls pyBKT itself. Both take the log table of `course_lib.adaptive.classroom.logs_to_frame` and return
one row of parameters (`PARAM_NAMES`) per skill.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from course_lib.adaptive.classroom import PARAM_NAMES

__all__ = ["fit_bkt", "fit_bkt_pybkt"]


def _check_frame(frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = {"user_id", "skill_name", "correct", "order_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"the log table lacks the columns {sorted(missing)} (see logs_to_frame)")
    if frame.empty:
        raise ValueError("the log table is empty")
    if not frame["correct"].isin([0, 1]).all():
        raise ValueError("the 'correct' column must hold only 0 and 1 (no NaN): drop unanswered attempts")


def _sequences(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One skill's attempts as a padded ``[n_learners, T]`` 0/1 array and its ``[n_learners, T]`` mask."""
    f = frame.sort_values(["user_id", "order_id"], kind="mergesort")
    codes, _ = pd.factorize(f["user_id"], sort=False)
    pos = f.groupby("user_id", sort=False).cumcount().to_numpy()
    N, T = codes.max() + 1, pos.max() + 1
    y = np.zeros((N, T))
    mask = np.zeros((N, T), dtype=bool)
    y[codes, pos] = f["correct"].to_numpy()
    mask[codes, pos] = True
    return y, mask


def _em_bkt(y: np.ndarray, mask: np.ndarray, init: np.ndarray, forgets: bool, tol: float,
            max_iter: int) -> tuple[np.ndarray, float, int]:
    """Baum-Welch for one skill, vectorised over learners; pyBKT's E- and M-steps. Returns (ψ, LL, iters)."""
    prior, learn, guess, slip, forget = init
    N, T = y.shape
    last_ll = -np.inf
    ll = -np.inf
    for it in range(1, max_iter + 1):
        A = np.array([[1 - learn, learn], [forget, 1 - forget]])         # A[i, j] = P(z_{t+1}=j | z_t=i)
        e = np.stack([np.where(y == 1, guess, 1 - guess), np.where(y == 1, 1 - slip, slip)], axis=-1)
        e = np.where(mask[..., None], e, 1.0)                            # [N, T, 2]
        alpha = np.zeros((N, T, 2))
        a = np.array([1 - prior, prior]) * e[:, 0]
        c = a.sum(-1)
        alpha[:, 0] = a / c[:, None]
        ll = np.log(c).sum()
        for t in range(1, T):
            a = (alpha[:, t - 1] @ A) * e[:, t]
            c = a.sum(-1)
            alpha[:, t] = a / c[:, None]
            ll += np.log(c[mask[:, t]]).sum()
            alpha[~mask[:, t], t] = alpha[~mask[:, t], t - 1]           # carry through padding
        beta = np.ones((N, T, 2))
        xi = np.zeros((2, 2))
        for t in range(T - 2, -1, -1):
            b = (e[:, t + 1] * beta[:, t + 1]) @ A.T
            b /= b.sum(-1, keepdims=True)
            live = mask[:, t + 1]
            beta[live, t] = b[live]
            pair = alpha[:, t, :, None] * A[None] * (e[:, t + 1] * beta[:, t + 1])[:, None, :]
            pair /= pair.sum(axis=(1, 2), keepdims=True)
            xi += pair[live].sum(0)
        gamma = alpha * beta
        gamma /= gamma.sum(-1, keepdims=True)
        gamma = gamma * mask[..., None]
        if it > 2 and abs(ll - last_ll) <= tol:
            break
        last_ll = ll
        prior = gamma[:, 0, 1].mean()
        learn = xi[0, 1] / max(xi[0].sum(), 1e-12)
        forget = xi[1, 0] / max(xi[1].sum(), 1e-12) if forgets else 0.0
        g0, g1 = gamma[..., 0].sum(), gamma[..., 1].sum()
        guess = (gamma[..., 0] * y).sum() / max(g0, 1e-12)
        slip = (gamma[..., 1] * (1 - y)).sum() / max(g1, 1e-12)
    return np.array([prior, learn, guess, slip, forget]), float(ll), it


def fit_bkt(frame: pd.DataFrame, forgets: bool = True, n_restarts: int = 3, seed: int = 0,
            tol: float = 0.005, max_iter: int = 100) -> pd.DataFrame:
    """Fit BKT (prior, learn, guess, slip, forget) per skill by EM, vectorised over learners.

    ``frame`` is a log table in pyBKT's format (`logs_to_frame`). The E- and M-steps, the
    convergence rule (|Δ log-likelihood| <= ``tol``) and the per-opportunity forgetting are those of
    pyBKT's ``Model.fit``; the first start is a typical BKT point (0.3, 0.1, 0.2, 0.1, 0.02) and
    ``n_restarts − 1`` more are random, keeping the best log-likelihood among those with guess < 1 − slip.
    Returns one row per skill: prior, learn, guess, slip, forget, loglik, n_learners, n_attempts.
    Derived in chapter 07, section 6.
    """
    _check_frame(frame)
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    rng = np.random.default_rng(seed)
    rows = []
    for skill, f in frame.groupby("skill_name", sort=True):
        y, mask = _sequences(f)
        best, best_ll = None, -np.inf
        for r in range(n_restarts):
            init = np.array([0.3, 0.1, 0.2, 0.1, 0.02 if forgets else 0.0]) if r == 0 else np.array(
                [rng.uniform(0.05, 0.6), rng.uniform(0.02, 0.4), rng.uniform(0.05, 0.35),
                 rng.uniform(0.02, 0.25), rng.uniform(0.0, 0.1) if forgets else 0.0])
            psi, ll, _ = _em_bkt(y, mask, init, forgets, tol, max_iter)
            if psi[2] < 1 - psi[3] and ll > best_ll:
                best, best_ll = psi, ll
        if best is None:
            best, best_ll = psi, ll
        rows.append({"skill": skill, **dict(zip(PARAM_NAMES, map(float, best))), "loglik": best_ll,
                     "n_learners": int(y.shape[0]), "n_attempts": int(mask.sum())})
    return pd.DataFrame(rows).set_index("skill")


@contextlib.contextmanager
def _pybkt_numpy_shim() -> Iterator[None]:
    """pyBKT 1.4.3's EM stores a ``(1, 1)`` array into a scalar slot, which NumPy >= 2.4 rejects.

    While the context is open, ``pyBKT.fit.EM_fit.run`` returns its log-likelihood as a float;
    the original function is restored on exit. Nothing else in pyBKT is touched.
    """
    from pyBKT.fit import EM_fit

    original = EM_fit.run

    def run(*args, **kwargs):
        result = original(*args, **kwargs)
        result["total_loglike"] = float(np.asarray(result["total_loglike"]).reshape(-1)[0])
        return result

    EM_fit.run = run
    try:
        yield
    finally:
        EM_fit.run = original


def fit_bkt_pybkt(frame: pd.DataFrame, forgets: bool = True, seed: int = 0, num_fits: int = 1,
                  init: Sequence[float] | None = (0.3, 0.1, 0.2, 0.1, 0.02)) -> pd.DataFrame:
    """Fit BKT per skill with the pyBKT library (``pyBKT.models.Model``), same output as `fit_bkt`.

    pyBKT's EM is pure Python (about 30 µs per attempt per iteration): keep the table to a few
    thousand attempts per skill. ``init`` (prior, learn, guess, slip, forget) starts every fit from
    the same point as `fit_bkt`'s first start (``None``: pyBKT's random starts). Chapter 07, section 6.
    """
    _check_frame(frame)
    float_format = pd.get_option("display.float_format")
    from pyBKT.models import Model  # its first import sets pandas' display.float_format globally

    pd.set_option("display.float_format", float_format)
    model = Model(seed=seed, num_fits=num_fits, parallel=False)
    cols = ["user_id", "skill_name", "correct", "order_id"]
    data = frame[cols].copy()
    with _pybkt_numpy_shim(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"pyBKT\..*")  # pandas deprecation notes from pyBKT
        if init is not None:
            prior, learn, guess, slip, forget = map(float, init)
            model.coef_ = {str(s): {"prior": prior, "learns": np.array([learn]), "guesses": np.array([guess]),
                                    "slips": np.array([slip]),
                                    "forgets": np.array([forget if forgets else 0.0])}
                           for s in data["skill_name"].unique()}
            model.fit(data=data, forgets=forgets)
        else:
            model.fit(data=data, forgets=forgets)
    rows = []
    for skill, coef in sorted(model.coef_.items()):
        f = data[data["skill_name"] == skill]
        rows.append({"skill": skill, "prior": float(coef["prior"]), "learn": float(coef["learns"][0]),
                     "guess": float(coef["guesses"][0]), "slip": float(coef["slips"][0]),
                     "forget": float(coef["forgets"][0]) if forgets else 0.0,
                     "n_learners": int(f["user_id"].nunique()), "n_attempts": len(f)})
    return pd.DataFrame(rows).set_index("skill")
