"""Tutoring feedback after a wrong answer: a simulator whose effects differ by learner type, and bandits.

Derived in chapter 07 (Adaptive difficulty and learning paths), section 11. After each wrong
answer the tutor chooses one feedback action a ∈ :data:`ACTIONS` (hint, worked example, easier
item, move on). In the simulator (card: ``datasets/tutoring_feedback_synthetic.md``) action a makes a
learner of type τ learn the skill with probability ``effect[τ, a]``; which action is best depends on
the type. The tutor never sees the type or the learning: it sees a *context* (a pretest score
bucket, correlated with the type) and the next answer (correct with 1 − slip_τ if learned, guess_τ
if not), its reward.

Policies (``begin / act / update`` on ``n`` learners at once):

* `FixedFeedback`: one action for everyone (a teacher's default, or the best one on past logs);
* `BetaThompson`: a Bernoulli Thompson-sampling bandit per learner, Beta(1, 1) priors ("from scratch");
* `MixtureThompson`: Thompson sampling over the components of a prior meta-learned on past
  learners' logs (`meta_learn_feedback_prior`: a context-dependent mixture of reward profiles,
  fitted by EM): the prior is θ, the learner's posterior over components is φᵢ;
* `OracleFeedback` is told each type and plays its best action (the regret reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ACTIONS", "FeedbackSimulator", "default_feedback_simulator", "FeedbackLogs", "simulate_feedback",
           "FixedFeedback", "BetaThompson", "MixtureThompson", "OracleFeedback", "meta_learn_feedback_prior"]

ACTIONS: tuple[str, ...] = ("hint", "worked example", "easier item", "move on")


@dataclass(frozen=True)
class FeedbackSimulator:
    """Learner types, their shares, feedback effects and answer noise, and how the context is drawn.

    ``effect [types, actions]`` P(learn | wrong answer, action); ``guess``/``slip [types]``;
    ``context_probs [types, contexts]`` P(pretest bucket | type). Derived in chapter 07, section 11.
    """

    types: tuple[str, ...]
    weights: tuple[float, ...]
    effect: np.ndarray = field(repr=False)
    guess: np.ndarray = field(repr=False)
    slip: np.ndarray = field(repr=False)
    context_probs: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        n = len(self.types)
        e, cp = np.asarray(self.effect), np.asarray(self.context_probs)
        if e.shape != (n, len(ACTIONS)) or (e < 0).any() or (e > 1).any():
            raise ValueError(f"effect must be probabilities of shape [{n}, {len(ACTIONS)}] (types x actions)")
        if len(self.weights) != n or not np.isclose(sum(self.weights), 1) or min(self.weights) < 0:
            raise ValueError(f"weights must be {n} non-negative shares summing to 1")
        if cp.ndim != 2 or cp.shape[0] != n or not np.allclose(cp.sum(1), 1):
            raise ValueError(f"context_probs must be [{n}, contexts] with rows summing to 1")
        if not (np.asarray(self.guess) < 1 - np.asarray(self.slip)).all():
            raise ValueError("every type needs guess < 1 − slip (a correct answer must be evidence of learning)")

    def best_actions(self) -> np.ndarray:
        """The oracle's action per type → ``[types]``."""
        return np.asarray(self.effect).argmax(1)


def default_feedback_simulator() -> FeedbackSimulator:
    """The chapter's simulator: chapter 07's learner types (quick 30 %, steady 50 %, struggling 20 %).

    Quick learners learn most when left to correct themselves (move on) or given a hint; steady
    learners from a hint; struggling learners from a worked example. See the data card.
    """
    #                  hint  worked  easier  move on
    effect = np.array([[0.40, 0.30, 0.20, 0.45],    # quick
                       [0.40, 0.32, 0.25, 0.15],    # steady
                       [0.12, 0.38, 0.30, 0.04]])   # struggling
    context = np.array([[0.10, 0.30, 0.60],         # pretest bucket low / middle / high
                        [0.30, 0.45, 0.25],
                        [0.60, 0.30, 0.10]])
    return FeedbackSimulator(("quick", "steady", "struggling"), (0.3, 0.5, 0.2), effect,
                             np.array([0.15, 0.20, 0.25]), np.array([0.05, 0.10, 0.15]), context)


@dataclass(frozen=True)
class FeedbackLogs:
    """``types``/``context [N]``; ``action``/``reward``/``learned [N, T]``; ``expected [N, T]`` = effect of the
    chosen action for the learner's type (the expected learning, what regret is measured on)."""

    types: np.ndarray
    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    learned: np.ndarray
    expected: np.ndarray

    def regret(self, sim: FeedbackSimulator) -> np.ndarray:
        """Cumulative expected regret against the oracle → ``[N, T]`` (in skills learned)."""
        best = np.asarray(sim.effect)[self.types].max(1)
        return np.cumsum(best[:, None] - self.expected, axis=1)


def simulate_feedback(sim: FeedbackSimulator, policy, n_learners: int, n_errors: int, seed: int) -> FeedbackLogs:
    """Run ``policy`` on ``n_learners`` new learners for ``n_errors`` wrong answers each.

    Every wrong answer gets one action; the learner learns with ``effect[type, action]`` and then
    answers the next item (the reward). Derived in chapter 07, section 11.
    """
    if n_learners < 1 or n_errors < 1:
        raise ValueError(f"n_learners and n_errors must be >= 1, got {n_learners}, {n_errors}")
    rng = np.random.default_rng(seed)
    types = rng.choice(len(sim.types), n_learners, p=np.asarray(sim.weights))
    cp = np.asarray(sim.context_probs)[types]
    context = (cp.cumsum(1) < rng.random(n_learners)[:, None]).sum(1).clip(max=cp.shape[1] - 1)
    effect, guess, slip = np.asarray(sim.effect)[types], np.asarray(sim.guess)[types], np.asarray(sim.slip)[types]
    state = policy.begin(context, types if getattr(policy, "uses_true_type", False) else None)
    shape = (n_learners, n_errors)
    action, reward, learned = np.zeros(shape, np.int64), np.zeros(shape, np.int8), np.zeros(shape, bool)
    idx = np.arange(n_learners)
    for t in range(n_errors):
        a = np.asarray(policy.act(state, rng), np.int64)
        learn = rng.random(n_learners) < effect[idx, a]
        y = rng.random(n_learners) < np.where(learn, 1 - slip, guess)
        action[:, t], reward[:, t], learned[:, t] = a, y, learn
        state = policy.update(state, a, y)
    return FeedbackLogs(types, context, action, reward, learned, np.take_along_axis(effect, action, 1))


# ----------------------------------------------------------------------------------------------------
# Policies: begin(context [N], types) -> state; act(state, rng) -> actions [N]; update(state, actions, rewards).
# Only a policy with ``uses_true_type = True`` gets the types; the others get None.
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FixedFeedback:
    """The same feedback for everyone (``action`` index into ACTIONS; None: uniformly at random)."""

    action: int | None = 0
    name: str = "always hint"

    def begin(self, context: np.ndarray, types: np.ndarray | None = None) -> dict:
        """No state but the number of learners."""
        return {"n": len(context)}

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """``action`` for every learner, or a uniformly random one each."""
        if self.action is None:
            return rng.integers(len(ACTIONS), size=state["n"])
        return np.full(state["n"], self.action, dtype=np.int64)

    def update(self, state: dict, action: np.ndarray, reward: np.ndarray) -> dict:
        """A fixed rule does not learn."""
        return state


@dataclass(frozen=True)
class BetaThompson:
    """Bernoulli Thompson sampling per learner with Beta(a0, b0) priors on each action's reward rate."""

    a0: float = 1.0
    b0: float = 1.0
    name: str = "bandit, from scratch"

    def begin(self, context: np.ndarray, types: np.ndarray | None = None) -> dict:
        """Success and failure counts ``[N, actions]``, all zero."""
        return {"s": np.zeros((len(context), len(ACTIONS))), "f": np.zeros((len(context), len(ACTIONS)))}

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """The action with the largest draw from each learner's Beta posteriors."""
        return rng.beta(self.a0 + state["s"], self.b0 + state["f"]).argmax(1)

    def update(self, state: dict, action: np.ndarray, reward: np.ndarray) -> dict:
        """Count the reward of the chosen action."""
        idx = np.arange(len(action))
        state["s"][idx, action] += reward
        state["f"][idx, action] += 1 - reward
        return state


@dataclass(frozen=True)
class MixtureThompson:
    """Thompson sampling over meta-learned reward profiles: sample a component, play its best action.

    ``profiles [K, actions]`` reward rates, ``prior [contexts, K]`` P(component | context) from
    `meta_learn_feedback_prior`. Each answer updates the learner's log posterior over components.
    ``sample=False``: play the action with the largest posterior-mean reward instead (greedy, no
    deliberate exploration; what it learns comes from the rewards of the actions it plays anyway).
    """

    profiles: np.ndarray = field(repr=False)
    prior: np.ndarray = field(repr=False)
    sample: bool = True
    name: str = "bandit, meta-learned prior"

    def __post_init__(self) -> None:
        p, w = np.asarray(self.profiles), np.asarray(self.prior)
        if p.ndim != 2 or p.shape[1] != len(ACTIONS) or (p <= 0).any() or (p >= 1).any():
            raise ValueError(f"profiles must be [components, {len(ACTIONS)}] rates strictly inside (0, 1)")
        if w.ndim != 2 or w.shape[1] != p.shape[0] or not np.allclose(w.sum(1), 1):
            raise ValueError(f"prior must be [contexts, {p.shape[0]}] with rows summing to 1")

    def begin(self, context: np.ndarray, types: np.ndarray | None = None) -> dict:
        """Each learner starts from the prior of their context: log weights ``[N, K]``."""
        return {"log_w": np.log(np.maximum(np.asarray(self.prior)[np.asarray(context)], 1e-300))}

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """Sample a component from each learner's posterior and play its best action (or the posterior-mean best)."""
        w = np.exp(state["log_w"] - state["log_w"].max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        if not self.sample:
            mean = w @ np.asarray(self.profiles)
            return (mean + 1e-9 * rng.random(mean.shape)).argmax(1)
        k = (w.cumsum(1) < rng.random(len(w))[:, None]).sum(1).clip(max=w.shape[1] - 1)
        return np.asarray(self.profiles)[k].argmax(1)

    def update(self, state: dict, action: np.ndarray, reward: np.ndarray) -> dict:
        """Bayes: add log P(reward | component, action) to every component's log weight."""
        p = np.asarray(self.profiles)[:, action].T                                       # [N, K]
        state["log_w"] += np.where(np.asarray(reward)[:, None] > 0, np.log(p), np.log1p(-p))
        return state


@dataclass(frozen=True)
class OracleFeedback:
    """Told each learner's type, plays that type's best action: the reference regret is measured against."""

    sim: FeedbackSimulator = field(repr=False)
    name: str = "oracle (knows the type)"
    uses_true_type: bool = True

    def begin(self, context: np.ndarray, types: np.ndarray | None = None) -> dict:
        """Remember the types (``simulate_feedback`` passes them to this policy only)."""
        if types is None or len(types) != len(context):
            raise ValueError("OracleFeedback needs the learners' types; run it through simulate_feedback")
        return {"types": np.asarray(types)}

    def act(self, state: dict, rng: np.random.Generator) -> np.ndarray:
        """Each learner's type's best action."""
        return self.sim.best_actions()[state["types"]]

    def update(self, state: dict, action: np.ndarray, reward: np.ndarray) -> dict:
        """The oracle does not need to learn."""
        return state


def meta_learn_feedback_prior(context: np.ndarray, action: np.ndarray, reward: np.ndarray, n_contexts: int,
                              n_components: int = 3, n_iter: int = 200, seed: int = 0
                              ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Meta-learn the bandit's prior from past learners' logs: a context-dependent mixture of reward profiles.

    ``context [N]``, ``action``/``reward [N, T]`` (logged under exploration). Model: learner n belongs
    to component k with P(k | context) = prior[c, k]; its reward for action a is Bernoulli(profiles[k, a]).
    EM maximises the marginal likelihood; profiles get a Beta(1, 1) smoothing. Returns
    ``(profiles [K, actions], prior [n_contexts, K], log-likelihood per iteration)``. Chapter 07, section 11.
    """
    context, action, reward = np.asarray(context), np.asarray(action), np.asarray(reward, float)
    if action.shape != reward.shape or action.ndim != 2 or context.shape != (len(action),):
        raise ValueError(f"need context [N] and action, reward [N, T]; got {context.shape}, {action.shape}, "
                         f"{reward.shape}")
    if context.min() < 0 or context.max() >= n_contexts:
        raise ValueError(f"context values must lie in 0..{n_contexts - 1}")
    n_actions = len(ACTIONS)
    onehot = np.eye(n_actions)[action]                                                   # [N, T, A]
    s, n = (onehot * reward[..., None]).sum(1), onehot.sum(1)                            # [N, A]
    rng = np.random.default_rng(seed)
    profiles = rng.uniform(0.25, 0.75, (n_components, n_actions))
    prior = np.full((n_contexts, n_components), 1.0 / n_components)
    history = []
    for _ in range(n_iter):
        log_r = np.log(prior[context]) + s @ np.log(profiles).T + (n - s) @ np.log1p(-profiles).T
        top = log_r.max(1, keepdims=True)
        history.append(float((top[:, 0] + np.log(np.exp(log_r - top).sum(1))).sum()))
        r = np.exp(log_r - top)
        r /= r.sum(1, keepdims=True)                                                     # [N, K]
        profiles = (r.T @ s + 1) / (r.T @ n + 2)
        prior = np.stack([r[context == c].sum(0) + 1e-3 for c in range(n_contexts)])
        prior /= prior.sum(1, keepdims=True)
    return profiles, prior, history
