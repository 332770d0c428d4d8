"""A tutor that plans several activities ahead over the BKT belief (QMDP lookahead).

Derived in chapter 07 (Adaptive difficulty and learning paths), section 10. The one-step tutor of
:class:`course_lib.adaptive.policies.ThompsonPolicy` practises the skill with the largest expected
gain *now*. A planner asks instead which activity starts the best sequence of ``depth`` activities.
For every hypothesis ψ_h about the learner, the learning dynamics over the 2^S joint mastery states
z form a small Markov decision process; finite-horizon value iteration gives

    Q_d(h, z, s) = Σ_z' P_h(z' | z, s) [r(z') + γ V_{d−1}(h, z')],   V_d(h, z) = max_s Q_d(h, z, s),

with reward r(z') = number of mastered skills (``objective="mastered"``) or 1 when all are mastered
(``objective="all"``). The tutor acts on the belief b(h, z) with
argmax_s Σ_z b(h, z) Q_depth(h, z, s): the QMDP approximation (Littman, Cassandra & Kaelbling 1995),
which plans the learning dynamics ``depth`` steps ahead but assumes the mastery state will be known
after this step (it does not value information). With ``depth = 1`` and ``objective="mastered"`` it
is exactly the one-step tutor (a test checks this). Like the one-step tutor it samples ψ_h from the
learner's posterior (Thompson) or averages over it, from a flat or a meta-learned prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from course_lib.adaptive.classroom import Curriculum, JointBelief, check_psi
from course_lib.adaptive.policies import ThompsonPolicy

__all__ = ["OBJECTIVES", "plan_values", "LookaheadPolicy"]

OBJECTIVES: tuple[str, ...] = ("mastered", "all")


def plan_values(curriculum: Curriculum, hypotheses: np.ndarray, depth: int, objective: str = "mastered",
                discount: float = 1.0) -> np.ndarray:
    """Q_depth(h, z, s) of practising skill s in joint state z under hypothesis h → ``[H, Z, S]``.

    ``hypotheses [H, 5]`` BKT parameters; finite-horizon value iteration over ``depth`` activities.
    Derived in chapter 07, section 10.
    """
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be a positive int (1 = the one-step tutor), got {depth!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not 0 < discount <= 1:
        raise ValueError(f"discount must lie in (0, 1], got {discount}")
    model = JointBelief(curriculum, check_psi(hypotheses, "hypotheses"))
    bits = model.bits                                                                  # [Z, S]
    S, Z = bits.shape[1], bits.shape[0]
    reward = bits.sum(1).astype(float) if objective == "mastered" else bits.all(1).astype(float)   # [Z]
    flip = np.arange(Z)[:, None] ^ (1 << np.arange(S))[None, :]                        # [Z, S]
    p_change = np.where(bits.T[None], model.forget[:, :, None], model.learn).transpose(0, 2, 1)  # [H, Z, S]
    value = np.zeros((len(hypotheses), Z))
    for _ in range(depth):
        stay = reward[None, :, None] + discount * value[:, :, None]                     # [H, Z, 1]
        move = reward[flip][None] + discount * value[:, flip]                          # [H, Z, S]
        q = (1 - p_change) * stay + p_change * move
        value = q.max(axis=2)
    return q


@dataclass(frozen=True)
class LookaheadPolicy(ThompsonPolicy):
    """The Bayesian tutor of `ThompsonPolicy` acting on ``depth``-step values instead of one-step gains.

    ``objective``: "mastered" (sum over the next ``depth`` activities of the number of mastered
    skills) or "all" (steps with every skill mastered: shortens time to mastery). Receding horizon:
    the same ``depth`` is planned again after every answer. Derived in chapter 07, section 10.
    """

    depth: int = 10
    objective: str = "mastered"
    discount: float = 1.0
    name: str = "lookahead planner"

    def begin(self, n_learners: int, learner_types: np.ndarray) -> dict:
        """The one-step tutor's state plus the plan's values ``q [H, Z, S]`` (computed once)."""
        state = super().begin(n_learners, learner_types)
        state["q"] = plan_values(self.curriculum, self.hypotheses, self.depth, self.objective, self.discount)
        return state

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """The skill whose ``depth``-step value is largest under a posterior sample (ties at random)."""
        q, belief = state["q"], state["belief"]
        w = self._posterior(state["log_w"])                                              # [N, H]
        n = len(w)
        if self.sample:
            h = (w.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(max=w.shape[1] - 1)
            value = np.einsum("nz,nzs->ns", belief[np.arange(n), h], q[h])
        else:
            value = (w[:, :, None] * belief).reshape(n, -1) @ q.reshape(-1, q.shape[2])
        return np.argmax(value + 1e-9 * rng.random(value.shape), axis=1)
