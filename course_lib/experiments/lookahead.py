"""Chapter 07 study: a tutor that plans several activities ahead vs the one-step Thompson tutor.

Derived in chapter 07 (Adaptive difficulty and learning paths), section 10, on the default
classroom of `course_lib.adaptive.classroom` (card: ``datasets/bkt_classroom_synthetic.md``). A past
cohort works through the fixed curriculum; from its logs the prior over learner hypotheses is
meta-learned (`meta_learn_prior`, empirical Bayes). New learners then get each policy of
:data:`POLICIES`: the fixed curriculum, the one-step Thompson tutor, and QMDP lookahead planners
(`course_lib.adaptive.planning.LookaheadPolicy`) of several depths and objectives — every tutor with
the same meta-learned prior, on the same learners (same seed: same types and starting states).

Per policy: share of learners with every skill mastered within the horizon (95 % CI), restricted
mean time to mastery (never mastered counts as horizon + 1), median time to mastery, learning gain
(skills mastered at the end minus at the start), mastery AUC; and per-learner paired differences
against the one-step tutor (95 % CI).

    python -m course_lib.experiments.lookahead --json results/lookahead.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from course_lib.adaptive.classroom import (ClassroomLogs, default_classroom, meta_learn_prior, sample_hypotheses,
                                           simulate)
from course_lib.adaptive.planning import LookaheadPolicy
from course_lib.adaptive.policies import FixedCurriculum, ThompsonPolicy
from course_lib.experiments import common
from course_lib.metrics import censored_median, mean_ci, proportion_ci

__all__ = ["Config", "POLICIES", "REFERENCE", "learner_outcomes", "run", "main"]

REFERENCE = "one-step Thompson"


@dataclass(frozen=True)
class Config:
    """``n_past`` past learners over ``past_horizon`` activities (the meta-training data), ``n_test``
    new learners over ``horizon`` activities per policy, ``n_hypotheses`` tutor hypotheses ψ_h, the
    fixed curriculum's ``block``, and the planners' ``depths`` (objective "mastered") plus one
    planner of depth ``all_depth`` with objective "all" (0 leaves it out)."""

    n_past: int = 600
    past_horizon: int = 80
    n_test: int = 1000
    horizon: int = 100
    n_hypotheses: int = 128
    block: int = 8
    depths: tuple[int, ...] = (10, 30)
    all_depth: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_past, self.n_test, self.horizon, self.past_horizon, self.n_hypotheses) < 1:
            raise ValueError("n_past, past_horizon, n_test, horizon and n_hypotheses must be >= 1")
        if any(d < 1 for d in self.depths) or self.all_depth < 0:
            raise ValueError(f"depths must be >= 1 and all_depth >= 0, got {self.depths}, {self.all_depth}")

    def policies(self) -> list[tuple[str, str, dict]]:
        """(name, registry key, keyword arguments) of every policy this config runs, in table order."""
        out = [("fixed curriculum", "fixed", {}), (REFERENCE, "thompson", {})]
        out += [(f"lookahead, depth {d}", "lookahead", {"depth": d}) for d in self.depths]
        if self.all_depth:
            out.append((f"lookahead, depth {self.all_depth}, all-mastered objective", "lookahead",
                        {"depth": self.all_depth, "objective": "all"}))
        return out


#: registry key -> builder(curriculum, config, hypotheses, meta-learned weights, **kwargs) -> policy
POLICIES: common.Registry[Callable] = common.Registry("learning-path policy")


@POLICIES.register("fixed")
def _fixed(cur, config: Config, hyp: np.ndarray, weights: np.ndarray, name: str) -> FixedCurriculum:
    return FixedCurriculum(cur, config.block, name=name)


@POLICIES.register("thompson")
def _thompson(cur, config: Config, hyp: np.ndarray, weights: np.ndarray, name: str) -> ThompsonPolicy:
    return ThompsonPolicy(cur, hyp, weights, name=name)


@POLICIES.register("lookahead")
def _lookahead(cur, config: Config, hyp: np.ndarray, weights: np.ndarray, name: str, **kwargs) -> LookaheadPolicy:
    return LookaheadPolicy(cur, hyp, weights, name=name, **kwargs)


def learner_outcomes(logs: ClassroomLogs) -> dict[str, np.ndarray]:
    """Per learner: time to mastery (NaN = never), the same censored at horizon + 1, learning gain, mastery AUC."""
    ttm = logs.time_to_mastery()
    return {"time_to_mastery": ttm, "time_censored": np.where(np.isnan(ttm), logs.horizon + 1, ttm),
            "gain": (logs.mastered[:, -1].sum(1) - logs.mastered[:, 0].sum(1)).astype(float),
            "auc": logs.mastery_curve().mean(1)}


def _row(name: str, out: dict[str, np.ndarray], ref: dict[str, np.ndarray] | None) -> dict:
    share, lo, hi = proportion_ci(~np.isnan(out["time_to_mastery"]))
    row = {"policy": name, "share_all_mastered": share, "share_lo": lo, "share_hi": hi,
           "median_time_to_mastery": censored_median(out["time_to_mastery"])}
    for key, label in (("time_censored", "rmst"), ("gain", "gain"), ("auc", "auc")):
        m, mlo, mhi = mean_ci(out[key])
        row.update({label: m, f"{label}_lo": mlo, f"{label}_hi": mhi})
        if ref is not None:
            d, dlo, dhi = mean_ci(out[key] - ref[key])
            row.update({f"{label}_vs_ref": d, f"{label}_vs_ref_lo": dlo, f"{label}_vs_ref_hi": dhi})
    return row


def run(config: Config = Config(), *, progress: bool = True, device=None) -> common.Result:
    """Fixed curriculum vs one-step Thompson vs lookahead planners, all tutors with the meta-learned prior.

    Rows: one per policy (see the module docstring); details: mean mastery curves per policy, the
    meta-learned prior's log-likelihood history, timings. NumPy on the CPU. Chapter 07, section 10.
    """
    del device
    room = default_classroom()
    cur = room.curriculum
    timings: dict[str, float] = {}
    with common.stopwatch() as elapsed:
        with common.stopwatch() as t:
            past = simulate(room, FixedCurriculum(cur, config.block), config.n_past, config.past_horizon,
                            seed=config.seed)
            hyp = sample_hypotheses(config.n_hypotheses, seed=config.seed)
            weights, history = meta_learn_prior(cur, past, hyp)
        timings["meta_learn_prior"] = t()
        outcomes, curves = {}, {}
        for name, key, kwargs in config.policies():
            policy = POLICIES[key](cur, config, hyp, weights, name=name, **kwargs)
            with common.stopwatch() as t:
                logs = simulate(room, policy, config.n_test, config.horizon, seed=config.seed + 1, progress=progress)
            timings[name] = t()
            outcomes[name], curves[name] = learner_outcomes(logs), logs.mastery_curve().mean(0)
        rows = [_row(name, out, outcomes[REFERENCE] if name != REFERENCE else None) for name, out in outcomes.items()]
    details = {"curves": curves, "prior_loglik": history, "timings": timings}
    return common.Result("lookahead", rows, dataclasses.asdict(config), elapsed(), details)


def _show(result: common.Result) -> str:
    cols = ["policy", "share_all_mastered", "median_time_to_mastery", "rmst", "gain", "auc", "rmst_vs_ref",
            "rmst_vs_ref_lo", "rmst_vs_ref_hi", "gain_vs_ref", "gain_vs_ref_lo", "gain_vs_ref_hi"]
    return result.table()[cols].round(3).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.lookahead [--set name=value] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
