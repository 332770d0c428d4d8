"""Chapter 07 study: choosing tutoring feedback after a wrong answer with a meta-learned contextual bandit.

Derived in chapter 07 (Adaptive difficulty and learning paths), section 11, on the simulator of
`course_lib.adaptive.feedback` (card: ``datasets/tutoring_feedback_synthetic.md``): the effect of
each feedback action (hint, worked example, easier item, move on) differs by learner type; the tutor
sees a pretest bucket (the context) and the next answer (the reward), never the type.

A past cohort gets uniformly random feedback (an exploration log); from it the bandit's prior is
meta-learned (`meta_learn_feedback_prior`: a context-dependent mixture of reward profiles) and the
best single action is read off. New learners then get each policy of :data:`POLICIES` for
``n_errors`` wrong answers each: always hint (a teacher's default), the best single action on the
past logs, a Beta-Bernoulli Thompson bandit from scratch, the meta-learned bandit (Thompson over
its components, and posterior-mean greedy; with and without the context), and the oracle that knows
every type. Measures: learning gain (skills learned per learner, realised and expected), cumulative
expected regret against the oracle after ``n_errors`` and after 10 (95 % CI over learners), and the
paired regret difference against the bandit from scratch.

    python -m course_lib.experiments.tutoring_feedback --json results/tutoring_feedback.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from course_lib.adaptive.feedback import (ACTIONS, BetaThompson, FeedbackLogs, FeedbackSimulator, FixedFeedback,
                                          MixtureThompson, OracleFeedback, default_feedback_simulator,
                                          meta_learn_feedback_prior, simulate_feedback)
from course_lib.experiments import common
from course_lib.metrics import mean_ci

__all__ = ["Config", "POLICIES", "REFERENCE", "Prior", "run", "main"]

REFERENCE = "bandit, from scratch"


@dataclass(frozen=True)
class Config:
    """``n_past`` past learners with random feedback for ``past_errors`` wrong answers each (the
    meta-training log), ``n_test`` new learners for ``n_errors`` wrong answers per policy, and the
    prior's ``n_components``."""

    n_past: int = 1000
    past_errors: int = 30
    n_test: int = 2000
    n_errors: int = 30
    n_components: int = 3
    seed: int = 0
    policies: tuple[str, ...] = ("always hint", "best single action (past logs)", REFERENCE,
                                 "bandit, meta-learned prior (Thompson)", "bandit, meta-learned prior (greedy)",
                                 "bandit, meta-learned prior (greedy, no context)", "oracle (knows the type)")

    def __post_init__(self) -> None:
        if min(self.n_past, self.past_errors, self.n_test, self.n_errors, self.n_components) < 1:
            raise ValueError("n_past, past_errors, n_test, n_errors and n_components must be >= 1")


@dataclass(frozen=True)
class Prior:
    """What the past cohort gives: the meta-learned ``profiles [K, actions]``, ``prior [contexts, K]``,
    the EM log-likelihood history and the best single action on the past logs."""

    profiles: np.ndarray
    prior: np.ndarray
    history: list
    best_single: int


POLICIES: common.Registry[Callable[[FeedbackSimulator, Prior], object]] = common.Registry("feedback policy")
POLICIES.register("always hint")(lambda sim, p: FixedFeedback(ACTIONS.index("hint"), "always hint"))
POLICIES.register("best single action (past logs)")(
    lambda sim, p: FixedFeedback(p.best_single, "best single action (past logs)"))
POLICIES.register(REFERENCE)(lambda sim, p: BetaThompson(name=REFERENCE))
POLICIES.register("bandit, meta-learned prior (Thompson)")(
    lambda sim, p: MixtureThompson(p.profiles, p.prior, True, "bandit, meta-learned prior (Thompson)"))
POLICIES.register("bandit, meta-learned prior (greedy)")(
    lambda sim, p: MixtureThompson(p.profiles, p.prior, False, "bandit, meta-learned prior (greedy)"))
POLICIES.register("bandit, meta-learned prior (greedy, no context)")(
    lambda sim, p: MixtureThompson(p.profiles, np.tile(p.prior.mean(0), (len(p.prior), 1)), False,
                                   "bandit, meta-learned prior (greedy, no context)"))
POLICIES.register("oracle (knows the type)")(lambda sim, p: OracleFeedback(sim))


def learn_prior(sim: FeedbackSimulator, config: Config) -> Prior:
    """Simulate the past cohort under random feedback and meta-learn the bandit's prior from its logs."""
    past = simulate_feedback(sim, FixedFeedback(None, "random feedback"), config.n_past, config.past_errors,
                             seed=config.seed)
    profiles, prior, history = meta_learn_feedback_prior(past.context, past.action, past.reward,
                                                         np.asarray(sim.context_probs).shape[1],
                                                         config.n_components, seed=config.seed)
    best = int(np.argmax([past.reward[past.action == a].mean() for a in range(len(ACTIONS))]))
    return Prior(profiles, prior, history, best)


def _row(name: str, logs: FeedbackLogs, sim: FeedbackSimulator, ref: np.ndarray | None, config: Config) -> dict:
    regret = logs.regret(sim)
    row = {"policy": name, "gain": float(logs.learned.sum(1).mean()),
           "expected_gain": float(logs.expected.sum(1).mean()),
           "reward_rate": float(logs.reward.mean())}
    for label, col in (("regret", -1), ("regret_at_10", min(10, config.n_errors) - 1)):
        m, lo, hi = mean_ci(regret[:, col])
        row.update({label: m, f"{label}_lo": lo, f"{label}_hi": hi})
    if ref is not None:
        d, lo, hi = mean_ci(regret[:, -1] - ref)
        row.update(regret_vs_scratch=d, regret_vs_scratch_lo=lo, regret_vs_scratch_hi=hi)
    for k, t in enumerate(sim.types):
        row[f"regret[{t}]"] = float(regret[logs.types == k, -1].mean())
    return row


def run(config: Config = Config(), *, progress: bool = True, device=None) -> common.Result:
    """Every feedback policy on the same new learners: rows as in the module docstring; details:
    mean cumulative regret curves, the meta-learned prior, the true effects, timings. Chapter 07, section 11."""
    del device, progress
    sim = default_feedback_simulator()
    timings: dict[str, float] = {}
    with common.stopwatch() as elapsed:
        with common.stopwatch() as t:
            prior = learn_prior(sim, config)
        timings["meta_learn_feedback_prior"] = t()
        logs_by = {}
        for name in POLICIES.check(config.policies):
            with common.stopwatch() as t:
                logs_by[name] = simulate_feedback(sim, POLICIES[name](sim, prior), config.n_test, config.n_errors,
                                                  seed=config.seed + 1)
            timings[name] = t()
        ref = logs_by[REFERENCE].regret(sim)[:, -1] if REFERENCE in logs_by else None
        rows = [_row(name, logs, sim, None if name == REFERENCE else ref, config) for name, logs in logs_by.items()]
    details = {"regret_curves": {name: logs.regret(sim).mean(0) for name, logs in logs_by.items()},
               "profiles": prior.profiles, "prior": prior.prior, "prior_loglik": prior.history,
               "best_single_action": ACTIONS[prior.best_single], "effect": np.asarray(sim.effect),
               "types": list(sim.types), "actions": list(ACTIONS), "timings": timings}
    return common.Result("tutoring_feedback", rows, dataclasses.asdict(config), elapsed(), details)


def _show(result: common.Result) -> str:
    cols = ["policy", "gain", "expected_gain", "regret", "regret_lo", "regret_hi", "regret_at_10",
            "regret_vs_scratch", "regret_vs_scratch_lo", "regret_vs_scratch_hi"]
    return result.table()[cols].round(3).to_string(index=False)


def main(argv: Sequence[str] | None = None) -> common.Result:
    """``python -m course_lib.experiments.tutoring_feedback [--set name=value] [--json FILE]``."""
    return common.cli(run, Config, argv, description=__doc__.split("\n")[0], show=_show)


if __name__ == "__main__":
    main()
