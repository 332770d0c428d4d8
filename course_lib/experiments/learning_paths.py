"""Learning paths in a simulated classroom: a fixed curriculum against tutors that plan the next activity.

Derived in chapter 07 (Adaptive difficulty and learning paths), sections 5-9, on
`course_lib.adaptive.classroom`'s default classroom (card: ``datasets/bkt_classroom_synthetic.md``).
A past cohort works through the fixed curriculum; from its logs we fit BKT per (learner type,
skill) with `fit_bkt` (checked against pyBKT) and meta-learn the prior over learners
(`meta_learn_prior`). New learners then get each policy of `POLICIES`: the fixed curriculum, the
Thompson-sampling tutor from scratch (flat prior), the same tutor with the meta-learned prior, and
the oracle tutor that knows each learner's type. The figures are in `course_lib.viz`.

    python -m course_lib.experiments.learning_paths --json FILE [--set n_test=200]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from course_lib.adaptive.bkt import fit_bkt, fit_bkt_pybkt
from course_lib.adaptive.classroom import (PARAM_NAMES, Classroom, ClassroomLogs, default_classroom, logs_to_frame,
                                           meta_learn_prior, sample_hypotheses, simulate)
from course_lib.adaptive.policies import FixedCurriculum, OraclePolicy, ThompsonPolicy
from course_lib.experiments import common
from course_lib.metrics import censored_median, proportion_ci

__all__ = ["Config", "POLICIES", "KINDS", "run", "main"]


@dataclass(frozen=True)
class Config:
    """Settings of the learning-path study: ``n_past`` past learners over ``past_horizon`` activities
    (the fitting data), ``n_test`` new learners over ``horizon`` activities per policy, ``n_hypotheses``
    tutor hypotheses ψ_h, the fixed curriculum's ``block`` length, the tutor's certification
    ``threshold``, and ``pybkt_learners`` past learners re-fitted with pyBKT (0 skips the check).
    ``keep_logs`` adds the logs, the classroom, the policies and the BKT fit to the details."""

    n_past: int = 600
    past_horizon: int = 80
    n_test: int = 500
    horizon: int = 100
    n_hypotheses: int = 128
    block: int = 8
    threshold: float = 0.95
    seed: int = 0
    pybkt_learners: int = 100
    keep_logs: bool = False


#: policy name -> its kind (baseline / adaptive / meta / ceiling)
KINDS = {"fixed curriculum": "baseline", "adaptive, from scratch": "adaptive",
         "adaptive, meta-learned prior": "meta", "oracle (knows the type)": "ceiling"}
#: policy name -> builder(classroom, config, hypotheses ψ_h, meta-learned prior weights) -> policy
POLICIES: common.Registry[Callable] = common.Registry("policy")


@POLICIES.register("fixed curriculum")
def _fixed(room: Classroom, config: Config, hyp: np.ndarray, weights: np.ndarray) -> FixedCurriculum:
    return FixedCurriculum(room.curriculum, config.block)


@POLICIES.register("adaptive, from scratch")
def _from_scratch(room: Classroom, config: Config, hyp: np.ndarray, weights: np.ndarray) -> ThompsonPolicy:
    return ThompsonPolicy(room.curriculum, hyp, None, name="adaptive, from scratch")


@POLICIES.register("adaptive, meta-learned prior")
def _meta_prior_tutor(room: Classroom, config: Config, hyp: np.ndarray, weights: np.ndarray) -> ThompsonPolicy:
    return ThompsonPolicy(room.curriculum, hyp, weights, name="adaptive, meta-learned prior")


@POLICIES.register("oracle (knows the type)")
def _oracle(room: Classroom, config: Config, hyp: np.ndarray, weights: np.ndarray) -> OraclePolicy:
    return OraclePolicy(room.curriculum, room.type_params)


def _bkt_recovery(room: Classroom, fit: pd.DataFrame) -> list[dict]:
    """One row per (learner type, skill, BKT parameter): the true and the fitted value."""
    cur, rows = room.curriculum, []
    for _, row in room.true_params().iterrows():
        key = f"{row['learner_type']}/{row['skill']}"
        s = cur.skills.index(row["skill"])
        rows += [{"learner_type": row["learner_type"], "skill": row["skill"],
                  "has_prerequisites": bool(cur.prerequisites[s]), "param": q, "true": float(row[q]),
                  "fitted": float(fit.loc[key, q]), "n_attempts": int(fit.loc[key, "n_attempts"])} for q in PARAM_NAMES]
    return rows


def _pybkt_check(room: Classroom, frame: pd.DataFrame, n_learners: int) -> list[dict]:
    """`fit_bkt` and pyBKT on the first ``n_learners`` past learners of one (type, skill)."""
    cur, truth = room.curriculum, room.true_params()
    key = f"{room.learner_types[0]}/{cur.skills[0]}"
    users = np.sort(frame.loc[frame["skill_name"] == key, "user_id"].unique())[:n_learners]
    sub = frame[(frame["skill_name"] == key) & frame["user_id"].isin(users)]
    ours, theirs = fit_bkt(sub, n_restarts=1), fit_bkt_pybkt(sub)
    true_row = truth[(truth["learner_type"] == room.learner_types[0]) & (truth["skill"] == cur.skills[0])]
    return [{"skill": key, "param": q, "true": float(true_row[q].iloc[0]), "fit_bkt": float(ours.loc[key, q]),
             "pyBKT": float(theirs.loc[key, q]), "n_attempts": int(len(sub))} for q in PARAM_NAMES]


def _meta_prior(room: Classroom, past: ClassroomLogs, config: Config) -> tuple[np.ndarray, np.ndarray, dict]:
    """Hypotheses ψ_h, their meta-learned prior weights, and a JSON-able summary of the prior."""
    hyp = sample_hypotheses(config.n_hypotheses, seed=config.seed)
    weights, history = meta_learn_prior(room.curriculum, past, hyp)
    top = np.argsort(weights)[::-1][:8]
    summary = {"hypotheses": hyp.tolist(), "weights": weights.tolist(), "loglik_history": history,
               "top": [{"weight": float(weights[h]), **dict(zip(PARAM_NAMES, map(float, hyp[h])))} for h in top]}
    return hyp, weights, summary


def _policy_row(name: str, kind: str, logs: ClassroomLogs, room: Classroom, config: Config) -> dict:
    """Mastery, time to mastery and certification of one policy's test learners."""
    curve = logs.mastery_curve()                                         # [N, T + 1]
    mean = curve.mean(0)
    ttm = logs.time_to_mastery()
    reached, r_lo, r_hi = proportion_ci(~np.isnan(ttm))
    cert_t, truly = logs.time_to_certify(config.threshold)
    has_est = not np.isnan(logs.estimate).all()
    certified = ~np.isnan(cert_t)
    nan = float("nan")
    row = {"policy": name, "kind": kind, "n_learners": config.n_test, "horizon": config.horizon,
           "share_all_mastered": reached, "share_all_mastered_lo": r_lo, "share_all_mastered_hi": r_hi,
           "median_time_to_mastery": censored_median(ttm),
           "mastery_at_20": float(mean[20]), "mastery_at_50": float(mean[min(50, config.horizon)]),
           "mastery_auc": float(curve.mean()),
           "certified_share": float(certified.mean()) if has_est else nan,
           "median_time_to_certify": censored_median(cert_t) if has_est else nan,
           "certified_truly_mastered": float(truly[certified].mean()) if certified.any() else nan,
           "estimate_brier": float(np.mean((logs.estimate - logs.mastered) ** 2)) if has_est else nan}
    for k, t in enumerate(room.learner_types):
        row[f"median_time_to_mastery[{t}]"] = censored_median(ttm[logs.learner_type == k])
    return row


def _curve(logs: ClassroomLogs) -> dict[str, list[float]]:
    """Mean share of skills mastered after t activities with a 95 % normal band over learners."""
    curve = logs.mastery_curve()
    mean = curve.mean(0)
    half = 1.96 * curve.std(0, ddof=1) / np.sqrt(len(curve))
    return {"mean": mean.tolist(), "lo": (mean - half).tolist(), "hi": (mean + half).tolist()}


def run(config: Config = Config(), *, progress: bool = True, device=None) -> common.Result:
    """Fixed curriculum vs adaptive tutors (from scratch / meta-learned prior / oracle) in the classroom.

    Rows: one per policy (share of learners who mastered everything with its CI, median time to
    mastery overall and per learner type, mastery after 20 / 50 activities, certification).
    Details: curves, time_to_mastery, learner_type, learner_types, true_types, param_names,
    bkt_recovery, pybkt_check, meta_prior, timings (+ logs, past_logs, classroom, policy_objects,
    bkt_fit with ``keep_logs``). NumPy simulation on the CPU (``device`` is accepted for the common
    contract). Derived in chapter 07, sections 5-9.
    """
    del device
    timings: dict[str, float] = {}
    room = default_classroom()
    with common.stopwatch() as elapsed:
        with common.stopwatch() as t:
            past = simulate(room, FixedCurriculum(room.curriculum, config.block), config.n_past, config.past_horizon,
                            seed=config.seed)
            frame = logs_to_frame(past, room, by_type=True)
            fit = fit_bkt(frame, seed=config.seed)
        timings["fit_bkt"] = t()
        pybkt_rows = []
        if config.pybkt_learners:
            with common.stopwatch() as t:
                pybkt_rows = _pybkt_check(room, frame, config.pybkt_learners)
            timings["pybkt_check"] = t()
        with common.stopwatch() as t:
            hyp, weights, prior = _meta_prior(room, past, config)
        timings["meta_learn_prior"] = t()
        rows, curves, ttms, logs_by, policies = [], {}, {}, {}, {}
        for name in POLICIES:
            policies[name] = POLICIES[name](room, config, hyp, weights)
            with common.stopwatch() as t:
                logs = logs_by[name] = simulate(room, policies[name], config.n_test, config.horizon,
                                                seed=config.seed + 1, progress=progress)
            timings[f"simulate: {name}"] = t()
            rows.append(_policy_row(name, KINDS[name], logs, room, config))
            curves[name] = _curve(logs)
            ttms[name] = [None if np.isnan(v) else float(v) for v in logs.time_to_mastery()]
    details = {"curves": curves, "time_to_mastery": ttms,
               "learner_type": next(iter(logs_by.values())).learner_type.tolist(),
               "learner_types": list(room.learner_types), "param_names": list(PARAM_NAMES),
               "true_types": np.asarray(room.type_params).tolist(), "bkt_recovery": _bkt_recovery(room, fit),
               "pybkt_check": pybkt_rows, "meta_prior": prior, "timings": timings}
    if config.keep_logs:
        details.update(logs=logs_by, past_logs=past, classroom=room, policy_objects=policies, bkt_fit=fit)
    return common.Result("learning_paths", rows, dataclasses.asdict(config), elapsed(), details)


def _show(result: common.Result) -> str:
    table = result.table().set_index("policy").drop(columns=["kind", "n_learners", "horizon"])
    return "Learning paths\n" + table.round(3).T.to_string()


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.learning_paths [--set name=value] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
