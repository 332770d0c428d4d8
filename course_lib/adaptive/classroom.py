"""A simulated classroom of knowledge-tracing learners: curriculum, learner types, the exact belief, logs.

Derived in chapter 07 (Adaptive difficulty and learning paths), part B. The pieces:

* **The curriculum** (what the tutor knows): skills, their prerequisites, how easy each skill is to
  learn, and how much a missing prerequisite slows learning.
* **The learners** (hidden from the tutor): every learner belongs to a learner type; a type is a
  vector of Bayesian Knowledge Tracing (BKT) parameters ψ = (prior, learn, guess, slip, forget).
  Practising skill s is one BKT step for that skill: the answer is correct with probability
  1 − slip if s is mastered and guess if not; afterwards a mastered skill is forgotten with
  probability forget and an unmastered one is learned with probability learn · ease_s, times
  ``blocked_learn`` while a prerequisite of s is not mastered (section 5).
* **Policies** (`course_lib.adaptive.policies`) choose the next activity (which skill to practise): a fixed curriculum, and a
  Thompson-sampling bandit over activities that tracks, for every hypothesis ψ_h about the learner,
  the exact belief over the 2^S joint mastery states (section 7). The bandit starts either from a
  flat prior over hypotheses ("from scratch") or from a prior *meta-learned* on past cohorts by
  empirical Bayes (`meta_learn_prior`, section 8): the prior over learners is the meta-parameter θ,
  the posterior of one learner is that learner's adapted φ_i.
* **Fitting BKT** from logs (`course_lib.adaptive.bkt`): `fit_bkt` (Baum-Welch vectorised over learners, the same EM as pyBKT)
  and `fit_bkt_pybkt` (the pyBKT library itself), both returning one row of parameters per skill.

Everything is NumPy, vectorised over learners; randomness only through explicit seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "PARAM_NAMES",
    "SCRATCH_RANGES",
    "Curriculum",
    "Classroom",
    "ClassroomLogs",
    "default_classroom",
    "sample_hypotheses",
    "check_psi",
    "JointBelief",
    "simulate",
    "log_likelihoods",
    "meta_learn_prior",
    "logs_to_frame",
    "logs_checksum",
]

PARAM_NAMES = ("prior", "learn", "guess", "slip", "forget")
"""The five BKT parameters of a learner type or hypothesis, in the column order of ``[.., 5]`` arrays."""

SCRATCH_RANGES = {"prior": (0.0, 0.5), "learn": (0.02, 0.5), "guess": (0.05, 0.4),
                  "slip": (0.02, 0.3), "forget": (0.0, 0.1)}
"""The flat "from scratch" prior: each BKT parameter uniform on this range (chapter 07, section 7)."""


def check_psi(psi: np.ndarray, name: str) -> np.ndarray:
    """Check an array of BKT parameter rows ``[n, 5]`` (columns `PARAM_NAMES`, each in [0, 1])."""
    psi = np.asarray(psi, dtype=float)
    if psi.ndim != 2 or psi.shape[1] != 5:
        raise ValueError(f"{name} must have shape [n, 5] with columns {PARAM_NAMES}, got {psi.shape}")
    if not np.isfinite(psi).all() or (psi < 0).any() or (psi > 1).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1] (no NaN)")
    guess, slip = psi[:, 2], psi[:, 3]
    if (guess >= 1 - slip).any():
        raise ValueError(f"{name}: every row needs guess < 1 − slip, otherwise a correct answer is not "
                         "evidence of mastery (the two hidden states swap meaning)")
    return psi


@dataclass(frozen=True)
class Curriculum:
    """What the tutor knows about the domain: skills, prerequisites, ease of learning each skill.

    ``prerequisites[s]`` lists the indices of skills that must be mastered before s is learned at
    full speed; while one is missing, learning s is ``blocked_learn`` times slower. ``ease[s]``
    multiplies a learner's learn rate on skill s. Derived in chapter 07, section 5.
    """

    skills: tuple[str, ...]
    prerequisites: tuple[tuple[int, ...], ...]
    ease: tuple[float, ...]
    blocked_learn: float = 0.1

    def __post_init__(self) -> None:
        n = len(self.skills)
        if n == 0:
            raise ValueError("a curriculum needs at least one skill")
        if n > 10:
            raise ValueError(f"{n} skills: the exact belief has 2^S states; keep S <= 10")
        if len(self.prerequisites) != n or len(self.ease) != n:
            raise ValueError(f"prerequisites ({len(self.prerequisites)}) and ease ({len(self.ease)}) need "
                             f"one entry per skill ({n})")
        for s, pre in enumerate(self.prerequisites):
            for p in pre:
                if not (0 <= p < n) or p == s:
                    raise ValueError(f"skill {self.skills[s]!r} has an invalid prerequisite index {p}")
        if any(not (0 < e <= 1) for e in self.ease):
            raise ValueError(f"ease values must lie in (0, 1], got {self.ease}")
        if not (0 <= self.blocked_learn <= 1):
            raise ValueError(f"blocked_learn must lie in [0, 1], got {self.blocked_learn}")
        self.topological_order()  # raises on cycles

    @property
    def n_skills(self) -> int:
        """Number of skills S."""
        return len(self.skills)

    def topological_order(self) -> tuple[int, ...]:
        """Skills ordered so that every prerequisite comes before the skills that need it."""
        remaining = {s: set(p) for s, p in enumerate(self.prerequisites)}
        order: list[int] = []
        while remaining:
            ready = sorted(s for s, pre in remaining.items() if not pre - set(order))
            if not ready:
                raise ValueError(f"the prerequisites contain a cycle among skills {sorted(remaining)}")
            order.append(ready[0])
            del remaining[ready[0]]
        return tuple(order)

    def expand(self, psi: np.ndarray) -> dict[str, np.ndarray]:
        """Per-skill BKT parameters of hypotheses ``psi [H, 5]`` → dict of ``[H, S]`` arrays."""
        psi = check_psi(psi, "psi")
        out = {name: np.repeat(psi[:, i:i + 1], self.n_skills, axis=1) for i, name in enumerate(PARAM_NAMES)}
        out["learn"] = out["learn"] * np.asarray(self.ease)[None, :]
        return out


@dataclass(frozen=True)
class Classroom:
    """A curriculum plus the (hidden) population of learners: types, their shares and BKT parameters.

    ``type_params [n_types, 5]`` holds (prior, learn, guess, slip, forget) per learner type; the
    learn rate on skill s is ``learn · curriculum.ease[s]``. Derived in chapter 07, section 5.
    """

    curriculum: Curriculum
    learner_types: tuple[str, ...]
    type_weights: tuple[float, ...]
    type_params: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        psi = check_psi(self.type_params, "type_params")
        if len(self.learner_types) != psi.shape[0] or len(self.type_weights) != psi.shape[0]:
            raise ValueError(f"learner_types ({len(self.learner_types)}), type_weights "
                             f"({len(self.type_weights)}) and type_params rows ({psi.shape[0]}) must match")
        w = np.asarray(self.type_weights, dtype=float)
        if (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"type_weights must be non-negative and sum to 1, got {self.type_weights}")

    @property
    def n_types(self) -> int:
        """Number of learner types."""
        return len(self.learner_types)

    def true_params(self) -> pd.DataFrame:
        """The true BKT parameters per (learner type, skill), one row each (for comparing with fits)."""
        p = self.curriculum.expand(self.type_params)
        rows = []
        for k, t in enumerate(self.learner_types):
            for s, name in enumerate(self.curriculum.skills):
                rows.append({"learner_type": t, "skill": name, **{q: float(p[q][k, s]) for q in PARAM_NAMES}})
        return pd.DataFrame(rows)


def default_classroom(blocked_learn: float = 0.1) -> Classroom:
    """The chapter-07 classroom: 5 arithmetic skills in a prerequisite graph, 3 learner types.

    Skills: counting → addition → {subtraction, multiplication} → division. Types (shares):
    quick (30 %), steady (50 %), struggling (20 %). See datasets/bkt_classroom_synthetic.md.
    """
    curriculum = Curriculum(
        skills=("counting", "addition", "subtraction", "multiplication", "division"),
        prerequisites=((), (0,), (1,), (1,), (2, 3)),
        ease=(1.0, 0.9, 0.8, 0.7, 0.6),
        blocked_learn=blocked_learn,
    )
    #                 prior  learn  guess  slip  forget
    params = np.array([[0.30, 0.35, 0.15, 0.05, 0.01],   # quick
                       [0.10, 0.18, 0.20, 0.10, 0.02],   # steady
                       [0.05, 0.10, 0.25, 0.15, 0.04]])  # struggling
    return Classroom(curriculum, ("quick", "steady", "struggling"), (0.3, 0.5, 0.2), params)


def sample_hypotheses(n: int, seed: int, ranges: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """``n`` hypotheses ψ_h about a learner, uniform on ``ranges`` (default `SCRATCH_RANGES`) → ``[n, 5]``.

    Rows with guess ≥ 1 − slip cannot occur with the default ranges. Chapter 07, section 7.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    ranges = ranges or SCRATCH_RANGES
    if set(ranges) != set(PARAM_NAMES):
        raise ValueError(f"ranges needs exactly the keys {PARAM_NAMES}, got {sorted(ranges)}")
    rng = np.random.default_rng(seed)
    lo = np.array([ranges[p][0] for p in PARAM_NAMES])
    hi = np.array([ranges[p][1] for p in PARAM_NAMES])
    if (lo < 0).any() or (hi > 1).any() or (lo > hi).any():
        raise ValueError(f"each range must satisfy 0 <= lo <= hi <= 1, got {ranges}")
    return check_psi(lo + (hi - lo) * rng.random((int(n), 5)), "sampled hypotheses")


# ----------------------------------------------------------------------------------------------------
# The exact belief over joint mastery states (2^S of them) under H hypotheses. Chapter 07, section 7.
# ----------------------------------------------------------------------------------------------------

class JointBelief:
    """The exact belief's tables. Tables of the joint-state hidden Markov model for H hypotheses, Z = 2^S joint mastery states."""

    def __init__(self, curriculum: Curriculum, psi: np.ndarray) -> None:
        p = curriculum.expand(psi)
        S = curriculum.n_skills
        Z = 2 ** S
        z = np.arange(Z)
        self.n_skills = S
        self.bits = ((z[:, None] >> np.arange(S)[None, :]) & 1).astype(bool)          # [Z, S]
        gate = np.ones((S, Z), dtype=bool)
        for s, pre in enumerate(curriculum.prerequisites):
            for q in pre:
                gate[s] &= self.bits[:, q]
        bit = self.bits.T[None]                                                         # [1, S, Z]
        speed = np.where(gate, 1.0, curriculum.blocked_learn)[None]                     # [1, S, Z]
        learn = p["learn"][:, :, None] * speed                                          # [H, S, Z]
        forget = p["forget"][:, :, None]
        self.gain = np.where(bit, -forget, learn)     # expected change in #mastered after practising s
        self.gain_flat = self.gain.transpose(0, 2, 1).reshape(-1, S)                    # [H·Z, S]
        self.learn, self.forget = learn, p["forget"]                                    # [H, S, Z], [H, S]
        self.right = np.stack([p["guess"], 1 - p["slip"]], axis=-1)                      # [H, S, 2]
        prior = p["prior"][:, None, :]                                                  # [H, 1, S]
        self.init = np.prod(np.where(self.bits[None], prior, 1 - prior), axis=-1)      # [H, Z]

    def update(self, belief: np.ndarray, log_w: np.ndarray, activity: np.ndarray,
               correct: np.ndarray) -> None:
        """Bayes update in place after learner n practised ``activity[n]`` and answered ``correct[n]``.

        ``belief [N, H, Z]`` is P(z | history, h); ``log_w [N, H]`` accumulates log P(history | h).
        Learners are grouped by activity s; the Z axis is viewed as ``[hi, 2, lo]`` so that the
        middle axis is skill s's bit, which is all that the answer and the transition touch.
        """
        N, H, Z = belief.shape
        for s in range(self.n_skills):
            idx = np.flatnonzero(activity == s)
            if idx.size == 0:
                continue
            lo = 2 ** s
            v = belief[idx].reshape(idx.size, H, Z // (2 * lo), 2, lo)
            right = self.right[None, :, s, :].astype(belief.dtype)                      # [1, H, 2]
            lik = np.where(correct[idx, None, None].astype(bool), right, 1 - right)     # [n, H, 2]
            v *= lik[:, :, None, :, None]
            norm = v.sum(axis=(2, 3, 4), dtype=np.float64)
            log_w[idx] += np.log(np.maximum(norm, 1e-300))
            v /= np.maximum(norm, 1e-30).astype(v.dtype)[:, :, None, None, None]
            learn = self.learn[:, s, :].reshape(H, Z // (2 * lo), 2, lo)[None, :, :, 0, :].astype(v.dtype)
            forget = self.forget[None, :, s, None, None].astype(v.dtype)                # learn is gated, bit s = 0
            v0, v1 = v[:, :, :, 0, :], v[:, :, :, 1, :]
            gained, lost = v0 * learn, v1 * forget
            v0 += lost - gained
            v1 += gained - lost
            belief[idx] = v.reshape(idx.size, H, Z)


# ----------------------------------------------------------------------------------------------------
# Policies: begin(n, types) -> state; act(state, rng) -> activities [N]; update(state, a, y) -> state
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassroomLogs:
    """What happened to N learners over T activities.

    ``learner_type [N]`` (int), ``activity [N, T]`` (skill practised), ``correct [N, T]`` (0/1),
    ``mastered [N, T + 1, S]`` (true hidden states before each activity and at the end),
    ``estimate [N, T + 1, S]`` (the policy's P(mastered), NaN when it keeps none).
    """

    learner_type: np.ndarray
    activity: np.ndarray
    correct: np.ndarray
    mastered: np.ndarray
    estimate: np.ndarray
    policy: str = ""

    @property
    def n_learners(self) -> int:
        """Number of learners N."""
        return self.activity.shape[0]

    @property
    def horizon(self) -> int:
        """Number of activities T."""
        return self.activity.shape[1]

    def mastery_curve(self) -> np.ndarray:
        """Fraction of skills mastered after t activities, per learner → ``[N, T + 1]``."""
        return self.mastered.mean(axis=2)

    def time_to_mastery(self) -> np.ndarray:
        """Activities until every skill was mastered for the first time → ``[N]`` (NaN = not within T)."""
        all_m = self.mastered.all(axis=2)
        first = np.argmax(all_m, axis=1).astype(float)
        first[~all_m.any(axis=1)] = np.nan
        return first

    def time_to_certify(self, threshold: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """When the *tutor* is ``threshold`` sure that every skill is mastered, and whether it was right.

        Returns ``(t [N], truly_mastered [N])``: the first t with estimate >= threshold on every skill
        (NaN if never, or if the policy keeps no estimate) and whether all skills were truly
        mastered at that t (False where t is NaN). Chapter 07, section 9.
        """
        if not (0 < threshold < 1):
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        sure = (np.nan_to_num(self.estimate, nan=-1.0) >= threshold).all(axis=2)
        t = np.argmax(sure, axis=1).astype(float)
        never = ~sure.any(axis=1)
        t[never] = np.nan
        truly = np.zeros(self.n_learners, dtype=bool)
        ok = ~never
        truly[ok] = self.mastered.all(axis=2)[np.flatnonzero(ok), t[ok].astype(int)]
        return t, truly


def simulate(classroom: Classroom, policy, n_learners: int, horizon: int, seed: int,
             learner_types: np.ndarray | None = None, progress: bool = False) -> ClassroomLogs:
    """Run ``policy`` on ``n_learners`` fresh learners for ``horizon`` activities.

    Learner types are drawn from ``classroom.type_weights`` unless given (``[N]`` ints). Only an
    `OraclePolicy` sees the types; other policies see activities and answers only.
    Derived in chapter 07, section 5.
    """
    if not isinstance(n_learners, (int, np.integer)) or n_learners < 1:
        raise ValueError(f"n_learners must be a positive int, got {n_learners!r}")
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    cur = classroom.curriculum
    if getattr(policy, "curriculum", cur) != cur:
        raise ValueError("the policy was built for a different curriculum than the classroom's")
    rng = np.random.default_rng(seed)
    if learner_types is None:
        types = rng.choice(classroom.n_types, size=n_learners, p=np.asarray(classroom.type_weights))
    else:
        types = np.asarray(learner_types, dtype=np.int64)
        if types.shape != (n_learners,) or types.min() < 0 or types.max() >= classroom.n_types:
            raise ValueError(f"learner_types must be {n_learners} ints in [0, {classroom.n_types})")
    p = cur.expand(classroom.type_params)
    P = {k: v[types] for k, v in p.items()}                                              # [N, S]
    S, N, T = cur.n_skills, n_learners, horizon
    gate_mask = np.zeros((S, S), dtype=bool)
    for s, pre in enumerate(cur.prerequisites):
        gate_mask[s, list(pre)] = True
    mastered = np.zeros((N, T + 1, S), dtype=bool)
    estimate = np.full((N, T + 1, S), np.nan)
    activity = np.zeros((N, T), dtype=np.int64)
    correct = np.zeros((N, T), dtype=np.int8)
    m = rng.random((N, S)) < P["prior"]
    mastered[:, 0] = m
    state = policy.begin(N, types if getattr(policy, "uses_true_type", False) else np.full(N, -1))
    idx = np.arange(N)
    steps = range(T)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"simulating {getattr(policy, 'name', 'policy')}", leave=False)
    for t in steps:
        est = policy.mastery_estimate(state)
        if est is not None:
            estimate[:, t] = est
        a = np.asarray(policy.act(state, rng), dtype=np.int64)
        if a.shape != (N,) or a.min() < 0 or a.max() >= S:
            raise ValueError(f"policy.act must return {N} skill indices in [0, {S})")
        m_a = m[idx, a]
        p_right = np.where(m_a, 1 - P["slip"][idx, a], P["guess"][idx, a])
        y = (rng.random(N) < p_right).astype(np.int8)
        open_gate = ~(gate_mask[a] & ~m).any(axis=1)
        p_learn = P["learn"][idx, a] * np.where(open_gate, 1.0, cur.blocked_learn)
        u = rng.random(N)
        m[idx, a] = np.where(m_a, u >= P["forget"][idx, a], u < p_learn)
        activity[:, t], correct[:, t], mastered[:, t + 1] = a, y, m
        state = policy.update(state, a, y)
    est = policy.mastery_estimate(state)
    if est is not None:
        estimate[:, T] = est
    return ClassroomLogs(types, activity, correct, mastered, estimate, getattr(policy, "name", ""))


# ----------------------------------------------------------------------------------------------------
# Meta-learning the prior over learners from past cohorts (empirical Bayes). Chapter 07, section 8.
# ----------------------------------------------------------------------------------------------------

def log_likelihoods(curriculum: Curriculum, logs: ClassroomLogs, hypotheses: np.ndarray,
                    chunk: int = 256) -> np.ndarray:
    """log P(learner n's answers | ψ_h), exact over the joint mastery states → ``[N, H]``."""
    psi = check_psi(hypotheses, "hypotheses")
    if logs.activity.max() >= curriculum.n_skills:
        raise ValueError("the logs practise a skill the curriculum does not have")
    model = JointBelief(curriculum, psi)
    out = np.zeros((logs.n_learners, len(psi)))
    for lo in range(0, logs.n_learners, chunk):
        sl = slice(lo, lo + chunk)
        n = len(out[sl])
        belief = np.broadcast_to(model.init.astype(np.float32), (n, *model.init.shape)).copy()
        log_w = np.zeros((n, len(psi)))
        for t in range(logs.horizon):
            model.update(belief, log_w, logs.activity[sl, t], logs.correct[sl, t])
        out[sl] = log_w
    return out


def meta_learn_prior(curriculum: Curriculum, logs: ClassroomLogs, hypotheses: np.ndarray,
                     n_iter: int = 200, floor: float = 1e-3) -> tuple[np.ndarray, list[float]]:
    """Meta-learn the prior over learners θ = weights on ``hypotheses [H, 5]`` from past cohorts' logs.

    Maximises the marginal likelihood Σ_n log Σ_h w_h P(answers_n | ψ_h) by EM (the nonparametric
    maximum-likelihood prior, "empirical Bayes"); returns ``(weights [H], log-likelihood per
    iteration)``. A share ``floor`` of the flat prior is mixed back in so that no hypothesis becomes
    impossible for a new learner unlike anyone seen before. Derived in chapter 07, section 8.
    """
    if not (0 <= floor < 1):
        raise ValueError(f"floor must lie in [0, 1), got {floor}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    L = log_likelihoods(curriculum, logs, hypotheses)                                    # [N, H]
    L = L - L.max(axis=1, keepdims=True)
    lik = np.exp(L)
    H = L.shape[1]
    w = np.full(H, 1.0 / H)
    history = []
    for _ in range(n_iter):
        mix = lik @ w                                                                    # [N]
        history.append(float(np.log(mix).sum()))
        w = w * (lik / mix[:, None]).mean(axis=0)
        w /= w.sum()
    return (1 - floor) * w + floor / H, history


# ----------------------------------------------------------------------------------------------------
# Fitting BKT from logs: our vectorised EM and pyBKT. Chapter 07, section 6.
# ----------------------------------------------------------------------------------------------------

def logs_to_frame(logs: ClassroomLogs, classroom: Classroom | Curriculum, by_type: bool = False) -> pd.DataFrame:
    """The logs as a long table in pyBKT's format: ``user_id, skill_name, correct, order_id`` (+ type).

    With ``by_type=True`` the skill name becomes ``"type/skill"`` so that a fit gives one parameter
    set per (learner type, skill); this needs a `Classroom` (the type names).
    """
    cur = classroom.curriculum if isinstance(classroom, Classroom) else classroom
    N, T = logs.activity.shape
    skills = np.asarray(cur.skills)[logs.activity.ravel()]
    user = np.repeat(np.arange(N), T)
    frame = pd.DataFrame({"user_id": user, "skill_name": skills, "correct": logs.correct.ravel().astype(int),
                          "order_id": np.arange(N * T)})
    if isinstance(classroom, Classroom):
        frame["learner_type"] = np.asarray(classroom.learner_types)[logs.learner_type[user]]
    elif by_type:
        raise ValueError("by_type=True needs the Classroom (for the type names), not only the Curriculum")
    if by_type:
        frame["skill_name"] = frame["learner_type"] + "/" + frame["skill_name"]
    return frame


def logs_checksum(logs: ClassroomLogs) -> str:
    """sha256 of the learner types, activities, answers and true mastery states (the data card's check)."""
    import hashlib

    h = hashlib.sha256()
    for arr, dtype in ((logs.learner_type, np.int64), (logs.activity, np.int64), (logs.correct, np.int8),
                       (logs.mastered, np.bool_)):
        h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()


