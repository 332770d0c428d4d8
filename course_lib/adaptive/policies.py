"""Policies that plan a simulated learner's next activity (chapter 07, sections 6-8).

* `FixedCurriculum`: the same sequence for everyone (the baseline a teacher would write);
* `ThompsonPolicy`: a Thompson-sampling bandit over activities that tracks, for every hypothesis ψ_h
  about the learner, the exact belief over the 2^S joint mastery states (`JointBelief`), starting from a
  flat prior over hypotheses ("from scratch") or from a prior meta-learned on past cohorts
  (`course_lib.adaptive.classroom.meta_learn_prior`): the prior is θ, one learner's posterior is φᵢ;
* `OraclePolicy`: the same bandit told each learner's true type (the ceiling).

Every policy has ``begin(n_learners, learner_types) -> state``, ``act(state, rng) -> activity [n]``,
``update(state, activity, correct) -> state`` and ``mastery_estimate(state)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from course_lib.adaptive.classroom import Curriculum, JointBelief, check_psi

__all__ = ["FixedCurriculum", "ThompsonPolicy", "OraclePolicy"]


@dataclass(frozen=True)
class FixedCurriculum:
    """Practise the skills in prerequisite order, ``block`` activities each, then start the cycle again.

    The policy every learner gets in a classroom without personalisation. Chapter 07, section 5.
    """

    curriculum: Curriculum
    block: int = 8
    name: str = "fixed curriculum"

    def __post_init__(self) -> None:
        if not isinstance(self.block, (int, np.integer)) or self.block < 1:
            raise ValueError(f"block must be a positive int, got {self.block!r}")

    def begin(self, n_learners: int, learner_types: np.ndarray) -> dict:
        """Start ``n_learners`` learners at step 0."""
        return {"t": 0, "n": n_learners}

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """The same skill for everybody: the current block's."""
        order = self.curriculum.topological_order()
        return np.full(state["n"], order[(state["t"] // self.block) % len(order)], dtype=np.int64)

    def update(self, state: dict, activity: np.ndarray, correct: np.ndarray) -> dict:
        """Move to the next step (the fixed curriculum ignores the answers)."""
        state["t"] += 1
        return state

    def mastery_estimate(self, state: dict) -> np.ndarray | None:
        """A fixed curriculum keeps no estimate."""
        return None


@dataclass(frozen=True)
class ThompsonPolicy:
    """A Thompson-sampling bandit over activities, Bayesian over the learner's BKT parameters.

    For every hypothesis ψ_h (rows of ``hypotheses [H, 5]``, prior weights ``weights [H]``) the
    policy tracks the exact belief over joint mastery states. Each step it samples one hypothesis
    from the learner's posterior and practises the skill with the largest expected gain in the
    number of mastered skills (``sample=False``: use the posterior mean instead of a sample).
    Flat ``weights`` = "from scratch"; weights from `meta_learn_prior` = "meta-learned prior".
    Derived in chapter 07, sections 7-8.
    """

    curriculum: Curriculum
    hypotheses: np.ndarray = field(repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    sample: bool = True
    name: str = "Thompson sampling"

    def __post_init__(self) -> None:
        psi = check_psi(self.hypotheses, "hypotheses")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=float)
            if w.shape != (psi.shape[0],) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
                raise ValueError(f"weights must be {psi.shape[0]} non-negative numbers with a positive sum")

    def _log_prior(self, n_learners: int, learner_types: np.ndarray) -> np.ndarray:
        H = len(self.hypotheses)
        w = np.full(H, 1.0 / H) if self.weights is None else np.asarray(self.weights, float) / np.sum(self.weights)
        return np.broadcast_to(np.log(np.maximum(w, 1e-300)), (n_learners, H)).copy()

    def begin(self, n_learners: int, learner_types: np.ndarray) -> dict:
        """Every learner starts from the prior: belief ``[N, H, Z]`` and log weights ``[N, H]``."""
        model = JointBelief(self.curriculum, self.hypotheses)
        belief = np.broadcast_to(model.init.astype(np.float32), (n_learners, *model.init.shape)).copy()
        return {"model": model, "belief": belief, "log_w": self._log_prior(n_learners, learner_types)}

    @staticmethod
    def _posterior(log_w: np.ndarray) -> np.ndarray:
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        return w / w.sum(axis=1, keepdims=True)

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """The skill with the largest expected mastery gain under a posterior sample (ties at random)."""
        model, belief = state["model"], state["belief"]
        w = self._posterior(state["log_w"])                                              # [N, H]
        n = len(w)
        if self.sample:
            h = (w.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(max=w.shape[1] - 1)
            gain = np.einsum("nz,nsz->ns", belief[np.arange(n), h], model.gain[h])
        else:
            gain = (w[:, :, None] * belief).reshape(n, -1) @ model.gain_flat
        return np.argmax(gain + 1e-9 * rng.random(gain.shape), axis=1)

    def update(self, state: dict, activity: np.ndarray, correct: np.ndarray) -> dict:
        """Condition every hypothesis' belief on the answer, then apply the learning transition."""
        state["model"].update(state["belief"], state["log_w"], activity, correct)
        state["log_w"] -= state["log_w"].max(axis=1, keepdims=True)
        return state

    def mastery_estimate(self, state: dict) -> np.ndarray:
        """P(skill s is mastered | answers so far), averaged over the posterior → ``[N, S]``."""
        w = self._posterior(state["log_w"])
        return (w[:, None, :] @ state["belief"])[:, 0, :] @ state["model"].bits.astype(float)

    def posterior(self, state: dict) -> np.ndarray:
        """The learner's posterior over hypotheses (the adapted φ_i) → ``[N, H]``."""
        return self._posterior(state["log_w"])


@dataclass(frozen=True)
class OraclePolicy(ThompsonPolicy):
    """The same tutor told each learner's true type: what knowing the learner is worth.

    ``hypotheses`` are the classroom's true ``type_params``; each learner's prior is one-hot on
    their own type. It is a reference, not an upper bound: the one-step-greedy rule is not an
    optimal policy, and without posterior samples it does not explore. Chapter 07, section 9.
    """

    name: str = "oracle (knows the type)"
    uses_true_type: bool = True

    def _log_prior(self, n_learners: int, learner_types: np.ndarray) -> np.ndarray:
        H = len(self.hypotheses)
        types = np.asarray(learner_types)
        if types.shape != (n_learners,) or types.min() < 0 or types.max() >= H:
            raise ValueError("OraclePolicy needs one learner type per learner, indexing its hypotheses")
        log_w = np.full((n_learners, H), -np.inf)
        log_w[np.arange(n_learners), types] = 0.0
        return np.where(np.isinf(log_w), -1e30, log_w)


# ----------------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------------
