"""Computerized adaptive testing (CAT): after every answer, ask the item that tells us most.

Derived in chapter 07 (Adaptive difficulty and learning paths), part A. A test learner i has a pool
of items that may be asked and a held-out set 𝒟ᵢ^q that is never asked and only scored. After n
answers (the support set 𝒟ᵢˢ, chosen one at a time) a model predicts P(correct) for every item;
a *selection rule* picks the next item from what is left of the pool:

* ``"random"``: any remaining pool item, uniformly;
* ``"max_information"``: the item with the largest Fisher information about the learner's own
  parameters at their current estimate. Under 2PL IRT with ability θ̂ this is
  I_j(θ̂) = a_j² p_j (1 − p_j), p_j = σ(a_j(θ̂ − b_j)) (section 2). Under a meta-learned model whose
  adapted parameters φ_i are a vector, the same rule uses the trace of the item's information
  matrix, p_j(1 − p_j) ‖∂ logit_j / ∂φ_i‖² (section 3) — for a scalar ability it is the 2PL formula;
* ``"learned_policy"``: the argmax of a trained selection policy's scores (the model's
  ``policy_scores(state)``, e.g. `course_lib.adaptive.bobcat.BOBCAT`, section 4b).

`run_cat` plays the test for many learners at once and records, after every n = 1..n_steps, the
predictions for the held-out items and a 2PL ability estimate from the items asked, so that
`summarize_cat` can report held-out AUC and ability error against n.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from course_lib.baselines.irt import fisher_information, prob_correct, quadrature_grid
from course_lib.data.responses import validate_responses
from course_lib.metrics import learner_resamples, pooled_bootstrap

__all__ = ["CATSplit", "CATModel", "IRTModel", "MetaCATModel", "RULES", "split_items", "select_items",
           "CATTrace", "run_cat", "summarize_cat", "synthetic_learners"]

RULES = ("random", "max_information", "learned_policy")


# ----------------------------------------------------------------------------- the split

@dataclass(frozen=True)
class CATSplit:
    """Which items of each test learner may be asked (``pool``) and which are only scored (``heldout``).

    Both ``[learners, items]`` bool; disjoint; both inside the learner's answered items.
    """

    pool: Tensor
    heldout: Tensor


def split_items(responses: Tensor, n_steps: int, holdout_frac: float = 0.2, seed: int = 0) -> CATSplit:
    """Per learner, hold out a random ``holdout_frac`` of the *answered* items (at least one).

    The rest of the answered items is the pool the test may ask from; missing answers are in
    neither (a test cannot ask an item whose answer we do not have). Every learner needs at least
    ``n_steps`` pool items. ``responses [learners, items]`` with NaN = missing. This is where a
    response matrix enters the CAT path, so it is validated here (`validate_responses`); `run_cat`
    and `summarize_cat` then trust the matrix the split was made from. Chapter 07, section 1.
    """
    r = validate_responses(responses, name="responses")
    if not (0 < holdout_frac < 1):
        raise ValueError(f"holdout_frac must lie in (0, 1), got {holdout_frac}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    answered = ~torch.isnan(r)
    counts = answered.sum(1)
    n_hold = (counts.float() * holdout_frac).round().long().clamp_min(1)
    short = torch.nonzero(counts - n_hold < n_steps).flatten()
    if len(short):
        i = int(short[0])
        raise ValueError(f"learner {i} answered {int(counts[i])} items: too few for {n_steps} asked items plus "
                         f"{int(n_hold[i])} held out ({len(short)} learners are short); drop them or lower n_steps")
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(r.shape, generator=g)
    keys[~answered] = 2.0
    rank = keys.argsort(1).argsort(1)                      # rank of each item in the learner's random order
    heldout = answered & (rank < n_hold[:, None])
    return CATSplit(pool=answered & ~heldout, heldout=heldout)


# ----------------------------------------------------------------------------- models

class CATModel(Protocol):
    """What a CAT needs from a learner model, for L learners answering one item at a time.

    ``begin(L)`` returns a state for learners who answered nothing; ``observe(state, item [L],
    answer [L])`` adds one answer per learner; ``predict(state)`` and ``information(state)`` give
    P(correct) and the Fisher information of every item of the bank, both ``[L, n_items]``.
    """

    name: str

    def begin(self, n_learners: int) -> dict: ...

    def observe(self, state: dict, item: Tensor, answer: Tensor) -> dict: ...

    def predict(self, state: dict) -> Tensor: ...

    def information(self, state: dict) -> Tensor: ...


class IRTModel:
    """2PL IRT with fixed item parameters ``a, b [items]``; the learner's ability by EAP.

    The posterior over θ lives on the quadrature grid of `course_lib.baselines.irt.quadrature_grid`
    and is updated with one item per answer (so a step costs O(L·Q), not O(L·n·Q)). `predict` is the
    posterior predictive Σ_q post(θ_q) σ(a_j(θ_q − b_j)); `information` is a_j² p_j(1 − p_j) at
    θ̂ = EAP; `ability` is θ̂ — the same numbers as ``irt.eap_ability_batch`` (tests check it).
    With ``groups [items]`` (ints 0..G−1, e.g. test sections, each with its own 2PL fit) the learner
    has one independent ability per group and an item informs only its own group's ability; then
    `ability` returns ``[L, G]``. Derived in chapter 05, section 3 and chapter 07, section 2.
    """

    def __init__(self, a: Tensor, b: Tensor, name: str = "2PL IRT", n_quad: int = 61,
                 groups: Tensor | None = None) -> None:
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        if a.dim() != 1 or a.shape != b.shape:
            raise ValueError(f"a and b must be 1-D of the same length, got {tuple(a.shape)} and {tuple(b.shape)}")
        if torch.isnan(a).any() or torch.isnan(b).any():
            raise ValueError("item parameters contain NaN")
        if groups is None:
            groups = torch.zeros(len(a), dtype=torch.long)
        groups = torch.as_tensor(groups).long()
        if groups.shape != a.shape or groups.min() < 0:
            raise ValueError(f"groups must hold one non-negative group index per item ({len(a)}), got "
                             f"shape {tuple(groups.shape)}")
        self.a, self.b, self.name, self.groups = a, b, name, groups
        self.n_groups = int(groups.max()) + 1
        self.nodes, self.log_w = quadrature_grid(n_quad)
        logits = a[None, :] * (self.nodes[:, None] - b[None, :])                 # [Q, items]
        self.p_grid = torch.sigmoid(logits)
        self.log_p = torch.nn.functional.logsigmoid(logits)
        self.log_q = torch.nn.functional.logsigmoid(-logits)

    def begin(self, n_learners: int) -> dict:
        """Every learner starts at the N(0, 1) prior (for each group's ability)."""
        return {"log_post": self.log_w.expand(n_learners, self.n_groups, -1).clone()}

    def observe(self, state: dict, item: Tensor, answer: Tensor) -> dict:
        """Multiply in P(answer | θ_q) of the item just answered (into its group's posterior)."""
        y = answer.double()[:, None]
        rows = torch.arange(len(item))
        log_post = state["log_post"].clone()
        log_post[rows, self.groups[item]] += y * self.log_p[:, item].T + (1 - y) * self.log_q[:, item].T
        return {"log_post": log_post}

    def _post(self, state: dict) -> Tensor:
        return torch.softmax(state["log_post"], dim=-1)                          # [L, G, Q]

    def ability(self, state: dict) -> Tensor:
        """EAP θ̂ = E[θ | answers] → ``[L]`` (``[L, G]`` with several groups)."""
        theta = (self._post(state) @ self.nodes).float()
        return theta[:, 0] if self.n_groups == 1 else theta

    def predict(self, state: dict) -> Tensor:
        """Posterior-predictive P(correct) for every item → ``[L, n_items]``."""
        per_group = self._post(state) @ self.p_grid                              # [L, G, items]
        return per_group.gather(1, self.groups.expand(len(per_group), 1, -1))[:, 0].float()

    def information(self, state: dict) -> Tensor:
        """a² p (1 − p) at the EAP of the item's own group → ``[L, n_items]``."""
        theta = (self._post(state) @ self.nodes)[:, self.groups]                  # [L, items]
        return fisher_information(theta, self.a[None, :], self.b[None, :]).float()


class MetaCATModel:
    """A meta-learned learner model (a `course_lib.algorithms.MAML`) used for adaptive testing.

    ``maml.model`` maps item indices ``[n]`` to logits ``[n]``; after every answer the learner's
    adapted parameters φ_i (those named by ``maml.adapt_prefixes``, e.g. their ability) are
    recomputed by the inner loop from the meta-learned θ on all answers so far. Information of item
    j is p_j(1 − p_j) ‖∂ logit_j/∂φ_i‖² (exactly a_j² p_j(1 − p_j) when φ_i is one ability).
    Derived in chapter 07, section 3.
    """

    def __init__(self, maml, n_items: int, name: str = "meta-learned", steps: int | None = None) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        self.maml, self.n_items, self.name, self.steps = maml, n_items, name, steps

    def begin(self, n_learners: int) -> dict:
        """No answers yet: every learner's φ_i is the meta-learned θ."""
        theta = {k: v.detach() for k, v in self.maml.theta.items()}
        phi = {k: v.expand(n_learners, *v.shape).clone() for k, v in theta.items()}
        return {"items": torch.zeros(n_learners, 0, dtype=torch.long), "answers": torch.zeros(n_learners, 0),
                "phi": phi}

    def observe(self, state: dict, item: Tensor, answer: Tensor) -> dict:
        """Append the answer and re-adapt φ_i on every answer so far (the support set 𝒟ᵢˢ)."""
        from course_lib.tasks import TaskBatch

        items = torch.cat([state["items"], item[:, None].long()], 1)
        answers = torch.cat([state["answers"], answer[:, None].float()], 1)
        phi = self.maml.adapt_batch(TaskBatch(items, answers, items, answers), steps=self.steps)
        return {"items": items, "answers": answers, "phi": phi}

    def _logits_and_sq_grad(self, phi: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        prefixes = self.maml.adapt_prefixes
        fast = [k for k in phi if prefixes is None or any(k.startswith(p) for p in prefixes)]
        everything = torch.arange(self.n_items)
        model = self.maml.model

        def logits(fast_params: dict[str, Tensor], slow_params: dict[str, Tensor]) -> Tensor:
            return torch.func.functional_call(model, {**slow_params, **fast_params}, (everything,))

        n_fast = sum(phi[k][0].numel() for k in fast)
        jacobian = torch.func.jacfwd if n_fast < self.n_items else torch.func.jacrev  # fewer passes

        def one(phi_i: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            f = {k: phi_i[k] for k in fast}
            s = {k: v for k, v in phi_i.items() if k not in fast}
            jac = jacobian(logits)(f, s)
            sq = sum(j.reshape(self.n_items, -1).pow(2).sum(1) for j in jac.values())
            return logits(f, s), sq

        with torch.no_grad():
            return torch.func.vmap(one)(phi)

    def predict(self, state: dict) -> Tensor:
        """P(correct) for every item under the adapted φ_i → ``[L, n_items]``."""
        everything = torch.arange(self.n_items).expand(len(state["items"]), self.n_items)
        with torch.no_grad():
            return torch.sigmoid(self.maml.predict_batch(state["phi"], everything)).float()

    def information(self, state: dict) -> Tensor:
        """p_j(1 − p_j) ‖∂ logit_j / ∂φ_i‖² at the adapted φ_i → ``[L, n_items]``."""
        z, sq = self._logits_and_sq_grad(state["phi"])
        p = torch.sigmoid(z)
        return (p * (1 - p) * sq).float()


# ----------------------------------------------------------------------------- selection

def select_items(rule: str, available: Tensor, information: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """The next item per learner under ``rule`` among ``available [L, items]`` (bool) → ``[L]`` long.

    ``"max_information"`` needs ``information [L, items]`` and returns its argmax over the available
    items (``"learned_policy"`` the same with a policy's scores in ``information``); ``"random"``
    picks uniformly among them. Derived in chapter 07, sections 2 and 4b.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if available.dtype != torch.bool or available.dim() != 2:
        raise ValueError("available must be a [learners, items] bool tensor")
    if not available.any(1).all():
        raise ValueError("some learner has no item left to ask; lower n_steps or enlarge the pool")
    if rule == "random":
        keys = torch.rand(available.shape, generator=generator)
        return torch.where(available, keys, -1.0).argmax(1)
    if information is None or information.shape != available.shape:
        raise ValueError(f"{rule} needs information of shape {tuple(available.shape)} (scores for learned_policy)")
    if torch.isnan(information[available]).any():
        raise ValueError("information has NaN for an available item")
    return torch.where(available, information.float(), -torch.inf).argmax(1)


# ----------------------------------------------------------------------------- the test

@dataclass(frozen=True)
class CATTrace:
    """One CAT run: ``asked [L, n_steps]`` items in order, ``answers [L, n_steps]``, held-out
    predictions after each n (``heldout_prob [n_steps, L, items]``, NaN outside the held-out set) and
    the 2PL EAP ability from the items asked (``theta [L, n_steps]``)."""

    method: str
    rule: str
    asked: Tensor
    answers: Tensor
    heldout_prob: Tensor
    theta: Tensor


def run_cat(model: CATModel, responses: Tensor, split: CATSplit, rule: str, n_steps: int = 20,
            seed: int = 0, scorer: IRTModel | None = None, method: str | None = None,
            progress: bool = False) -> CATTrace:
    """Play an adaptive test of ``n_steps`` items for every learner of ``responses [L, items]``.

    Items are chosen by ``rule`` from ``split.pool`` only (never from ``split.heldout``, never twice);
    after each answer ``model.predict`` scores the held-out items and ``scorer`` (default: the model
    itself if it is an `IRTModel`) estimates the 2PL ability from the items asked so far.
    ``responses`` must be the (validated) matrix ``split`` was made from by `split_items`.
    Derived in chapter 07, sections 2-3.
    """
    r = _matching(responses, split)
    if split.pool.shape != r.shape or split.heldout.shape != r.shape:
        raise ValueError(f"split masks must have the shape of responses {tuple(r.shape)}")
    if (split.pool & split.heldout).any():
        raise ValueError("an item is both in the pool and held out: the test would leak the answer")
    if torch.isnan(r[split.pool | split.heldout]).any():
        raise ValueError("the split uses items the learner did not answer (NaN); build it with split_items")
    if n_steps < 1 or int(split.pool.sum(1).min()) < n_steps:
        raise ValueError(f"every learner needs at least n_steps={n_steps} >= 1 pool items")
    scorer = scorer if scorer is not None else (model if isinstance(model, IRTModel) else None)
    if scorer is None:
        raise ValueError("pass scorer=IRTModel(a, b) to measure ability on the 2PL scale")
    g = torch.Generator().manual_seed(seed)
    L, I = r.shape
    available = split.pool.clone()
    asked = torch.zeros(L, n_steps, dtype=torch.long)
    answers = torch.zeros(L, n_steps)
    probs = torch.full((n_steps, L, I), float("nan"))
    theta = torch.zeros(L, n_steps)
    rows = torch.arange(L)
    state = model.begin(L)
    score_state = state if scorer is model else scorer.begin(L)
    steps = range(n_steps)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"CAT {method or model.name} ({rule})", leave=False)
    for n in steps:
        info = _scores(model, state, rule)
        j = select_items(rule, available, info, g)
        available[rows, j] = False
        asked[:, n], answers[:, n] = j, r[rows, j]
        state = model.observe(state, j, answers[:, n])
        probs[n] = torch.where(split.heldout, model.predict(state), torch.tensor(float("nan")))
        if scorer is model:
            score_state = state
        else:
            score_state = scorer.observe(score_state, j, answers[:, n])
        theta[:, n] = scorer.ability(score_state)
    return CATTrace(method or f"{model.name} ({rule})", rule, asked, answers, probs, theta)


def _scores(model: CATModel, state: dict, rule: str) -> Tensor | None:
    """What ``rule`` ranks the items by: the model's information, its policy's scores, or nothing."""
    if rule == "max_information":
        return model.information(state)
    if rule == "learned_policy":
        if not hasattr(model, "policy_scores"):
            raise ValueError(f"rule 'learned_policy' needs a model with a selection policy (policy_scores), "
                             f"and {model.name!r} has none; use a BOBCAT tester or another rule")
        return model.policy_scores(state)
    return None


# ----------------------------------------------------------------------------- scoring

def _matching(responses: Tensor, split: CATSplit) -> Tensor:
    """The float tensor ``split`` was made from (checked by shape only: `split_items` validated it)."""
    r = torch.as_tensor(responses, dtype=torch.float32)
    if r.shape != split.pool.shape:
        raise ValueError(f"responses {tuple(r.shape)} must be the matrix the split was made from "
                         f"{tuple(split.pool.shape)}; build the split with split_items(responses, ...)")
    return r


def summarize_cat(trace: CATTrace, responses: Tensor, split: CATSplit, reference_theta: Tensor,
                  n_boot: int = 200, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Held-out AUC (pooled, learner-bootstrap 95 % CI) and ability RMSE vs ``reference_theta [L]`` per n.

    On real data the reference is the 2PL EAP from *all* the learner's answers (the truth is
    unknown); on synthetic learners it is the true ability. The AUC interval is
    `course_lib.metrics.pooled_bootstrap` (exact, no score bins). ``progress`` shows a bar over n.
    Chapter 07, section 4.
    """
    from tqdm.auto import tqdm

    r = _matching(responses, split)
    L = r.shape[0]
    ref = torch.as_tensor(reference_theta, dtype=torch.float32)
    if ref.shape != (L,):
        raise ValueError(f"reference_theta must have shape [{L}], got {tuple(ref.shape)}")
    hold = split.heldout.numpy()
    y = r.numpy()[hold]
    learner = np.broadcast_to(np.arange(L)[:, None], hold.shape)[hold]
    boots = learner_resamples(L, n_boot, seed)                                  # [n_boot, L]
    rows = []
    for n in tqdm(range(trace.asked.shape[1]), desc=f"bootstrap CIs: {trace.method or trace.rule}", leave=False,
                  disable=not progress):
        p = trace.heldout_prob[n].numpy()[hold]
        m = pooled_bootstrap(y, p, learner, n_boot=n_boot, seed=seed + n)
        err2 = ((trace.theta[:, n] - ref) ** 2).numpy()
        rlo, rhi = np.quantile(np.sqrt(boots @ err2 / L), [0.025, 0.975])
        rows.append({"method": trace.method, "rule": trace.rule, "n_items": n + 1, "auc": m["auc"],
                     "auc_lo": m["auc_lo"], "auc_hi": m["auc_hi"], "ability_rmse": float(np.sqrt(err2.mean())),
                     "ability_rmse_lo": float(rlo), "ability_rmse_hi": float(rhi), "n_learners": L})
    return pd.DataFrame(rows)


def synthetic_learners(a: Tensor, b: Tensor, n_learners: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n_learners`` synthetic learners answering every item under 2PL(a, b) with θ ~ N(0, 1).

    Returns ``(responses [n_learners, items], theta [n_learners])``; the true θ is what the ability
    error is measured against. Chapter 07, section 3.
    """
    if n_learners < 1:
        raise ValueError(f"n_learners must be >= 1, got {n_learners}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_learners, generator=g)
    p = prob_correct(theta[:, None], torch.as_tensor(a).float()[None], torch.as_tensor(b).float()[None])
    return (torch.rand(p.shape, generator=g) < p).float(), theta
