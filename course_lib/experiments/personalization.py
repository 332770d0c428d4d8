"""Four ways to serve a new learner, against the Bayes-optimal ceiling (the study behind chapter 01).

Derived in chapter 01 (Personalization as few-shot learning). A learner is a task: K of their
answers are the support set 𝒟ᵢˢ, further answers the query set 𝒟ᵢ^q. On synthetic learners whose
true parameters are known, the study compares, for K = 1, 2, 4, ... answers of a *new* learner:

1. ``global``      one model for everyone, trained on the pooled answers of past learners;
2. ``scratch``     a model per learner, trained from zero on their K answers only;
3. ``fine_tune``   transfer learning: the global model, then ordinary gradient steps on the K answers
                   (the pretraining objective min_θ Σᵢ Lᵢ(θ) does not know fine-tuning will follow);
4. ``maml``        meta-learning (``course_lib.algorithms.MAML``): θ trained so that a few gradient
                   steps on K answers work, min_θ Σᵢ Lᵢ^q(θ − α∇Lᵢˢ(θ));
5. ``bayes``       the ceiling: the posterior predictive under the true generative model.

The learners are simulated by `make_learners` (public item metadata plus a hidden item property
that only answers reveal) rather than by ``course_lib.data.synthetic.sample_2pl``, whose items have
no public metadata; `bayes_predictive` agrees with ``SyntheticIRT.posterior_predictive`` wherever
both apply (tests/test_personalization.py).

Run it from the command line (the notebook calls the same `run`)::

    python -m course_lib.experiments.personalization --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from course_lib.algorithms import MAML, inner_adapt
from course_lib.algorithms.functional import get_loss, task_loss
from course_lib.data.responses import responses_checksum, split_learners
from course_lib.metrics import auc, log_loss, mean_ci
from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["SyntheticLearners", "make_learners", "LearnerModel", "bayes_predictive",
           "fixed_query_tasks", "split_by_interaction", "item_counts", "pretrain", "adapt_path",
           "predict_tasks", "meta_train", "per_learner_metrics", "objective_slice", "Config", "run", "METHODS"]

METHODS = ("global", "scratch", "fine_tune", "maml", "bayes")
SKILL_NAMES = ("algebra", "reading")


# ----------------------------------------------------------------------------- synthetic learners

@dataclass(frozen=True)
class SyntheticLearners:
    """A population of simulated learners and items whose true parameters are known.

    Learner i has parameters zᵢ = (ability in each skill, affinity for word problems) drawn from
    N(``prior_mean``, ``prior_cov``). Item j has *public* metadata (its skill kⱼ and calibrated
    difficulty bⱼ, in ``public_features`` = [one-hot(kⱼ), −bⱼ]) and *hidden* properties that only
    answers reveal: a word-problem load λⱼ and an offset cⱼ. Then

        P(learner i answers item j correctly) = σ(u_{i,kⱼ} + λⱼ vᵢ − bⱼ + cⱼ) = σ(xⱼ · zᵢ + oⱼ)

    with ``true_design`` xⱼ = [one-hot(kⱼ), λⱼ] and ``true_offset`` oⱼ = cⱼ − bⱼ.
    Shapes: ``public_features [items, S+1]``, ``true_design [items, P]``, ``true_offset [items]``,
    ``learner_params [learners, P]``, ``prob`` and ``responses [learners, items]`` (responses: 1 / 0,
    NaN = missing). Derived in chapter 01, section 1.
    """

    skill: Tensor
    difficulty: Tensor
    loading: Tensor
    offset: Tensor
    public_features: Tensor
    true_design: Tensor
    true_offset: Tensor
    prior_mean: Tensor
    prior_cov: Tensor
    learner_params: Tensor
    prob: Tensor
    responses: Tensor
    param_names: tuple[str, ...]

    @property
    def n_learners(self) -> int:
        """Number of learners (rows of ``responses``)."""
        return self.responses.shape[0]

    @property
    def n_items(self) -> int:
        """Number of items (columns of ``responses``)."""
        return self.responses.shape[1]


def make_learners(n_learners: int = 1500, n_items: int = 80, *, n_skills: int = 2,
                  ability_sd: float = 1.0, skill_corr: float = 0.5, trait_sd: float = 1.0,
                  loading_sd: float = 1.0, offset_sd: float = 0.5, missing_rate: float = 0.1,
                  seed: int = 0) -> SyntheticLearners:
    """Simulate learners answering items under a multidimensional logistic (2PL-type) model.

    Items: skill kⱼ balanced over ``n_skills``, difficulty bⱼ ~ U(−2, 2) (public); word-problem
    load λⱼ ~ N(0, ``loading_sd``²) and offset cⱼ ~ N(0, ``offset_sd``²) (hidden). Learners:
    abilities uᵢ ~ N(0, Σ) with sd ``ability_sd`` and correlation ``skill_corr`` between skills;
    affinity vᵢ ~ N(0, ``trait_sd``²), independent of uᵢ. logit = u_{i,kⱼ} + λⱼ vᵢ − bⱼ + cⱼ. Each
    answer is missing with probability ``missing_rate``. Everything is determined by ``seed``.
    Derived in chapter 01, section 1.
    """
    if n_learners < 2 or n_items < 2:
        raise ValueError(f"need at least 2 learners and 2 items, got {n_learners} x {n_items}")
    if n_skills < 1 or n_skills > n_items:
        raise ValueError(f"n_skills must be between 1 and n_items, got {n_skills}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if not -1.0 / max(n_skills - 1, 1) < skill_corr < 1.0:
        raise ValueError(f"skill_corr={skill_corr} does not give a valid correlation matrix")
    if min(ability_sd, trait_sd) <= 0 or min(loading_sd, offset_sd) < 0:
        raise ValueError("ability_sd and trait_sd must be > 0, loading_sd and offset_sd >= 0")
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    skill = (torch.arange(n_items) % n_skills)[torch.randperm(n_items, generator=g)]
    difficulty = torch.rand(n_items, generator=g, dtype=dt) * 4 - 2
    loading = torch.randn(n_items, generator=g, dtype=dt) * loading_sd
    offset = torch.randn(n_items, generator=g, dtype=dt) * offset_sd
    onehot = nn.functional.one_hot(skill, n_skills).to(dt)
    public = torch.cat([onehot, -difficulty[:, None]], 1)
    design = torch.cat([onehot, loading[:, None]], 1)
    p = n_skills + 1
    prior_cov = torch.zeros(p, p, dtype=dt)
    prior_cov[:n_skills, :n_skills] = ability_sd**2 * torch.full((n_skills, n_skills), skill_corr,
                                                                 dtype=dt).fill_diagonal_(1.0)
    prior_cov[-1, -1] = trait_sd**2
    prior_mean = torch.zeros(p, dtype=dt)
    z = prior_mean + torch.randn(n_learners, p, generator=g, dtype=dt) @ torch.linalg.cholesky(prior_cov).T
    prob = torch.sigmoid(z @ design.T + (offset - difficulty))
    answers = (torch.rand(n_learners, n_items, generator=g, dtype=dt) < prob).to(torch.float32)
    answers[torch.rand(n_learners, n_items, generator=g) < missing_rate] = float("nan")
    names = tuple(f"ability_{SKILL_NAMES[k] if k < len(SKILL_NAMES) else k}" for k in range(n_skills))
    return SyntheticLearners(skill=skill, difficulty=difficulty, loading=loading, offset=offset,
                             public_features=public, true_design=design, true_offset=offset - difficulty,
                             prior_mean=prior_mean, prior_cov=prior_cov, learner_params=z, prob=prob,
                             responses=answers, param_names=names + ("word_problem_affinity",))


# ----------------------------------------------------------------------------- the model

class LearnerModel(nn.Module):
    """f(j; θ) = w · [xⱼ, eⱼ] + cⱼ: the logit that a learner answers item j correctly.

    xⱼ are the item's public features (a fixed buffer), eⱼ a learned item embedding
    (``embed``, ``embed_dim`` numbers per item) and cⱼ a learned item offset (``offset``): those
    two are the population's part of θ. ``head`` (w) is the learner's part, the one adapted per
    learner. Input: item indices ``[n]`` (long) -> logits ``[n]``. Derived in chapter 01, section 3.
    """

    def __init__(self, features: Tensor, embed_dim: int = 1, init_scale: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if features.dim() != 2:
            raise ValueError(f"features must be [items, features], got shape {tuple(features.shape)}")
        self.register_buffer("features", features.float())
        self.head = nn.Linear(features.shape[1] + embed_dim, 1, bias=False)
        self.embed = nn.Embedding(features.shape[0], embed_dim)
        self.offset = nn.Embedding(features.shape[0], 1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * init_scale)
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=g) * init_scale)
            self.offset.weight.zero_()

    def forward(self, items: Tensor) -> Tensor:
        inputs = torch.cat([self.features[items], self.embed(items)], -1)
        return self.head(inputs).squeeze(-1) + self.offset(items).squeeze(-1)


# ----------------------------------------------------------------------------- Bayes ceiling

def bayes_predictive(features: Tensor, item_offset: Tensor, prior_mean: Tensor, prior_cov: Tensor,
                     x_support: Tensor, y_support: Tensor, x_query: Tensor,
                     support_mask: Tensor | None = None, *, grid_points: int = 21,
                     radius: float = 4.5, chunk: int = 128) -> Tensor:
    """Posterior predictive P(yⱼ = 1 | 𝒟ᵢˢ) under the true model, by quadrature over zᵢ.

    p(z | 𝒟ˢ) ∝ N(z; μ, Σ) Πₖ σ(xₖ·z + cₖ)^{yₖ} (1 − σ(xₖ·z + cₖ))^{1−yₖ}, and the prediction for
    query item j is ∫ σ(xⱼ·z + cⱼ) p(z | 𝒟ˢ) dz. The integral is a product trapezoid rule on a
    ``grid_points``^P grid over ±``radius`` prior standard deviations (whitened by the prior's
    Cholesky factor). No learner can be predicted better in expectation from the same answers.
    Shapes: ``features [items, P]``, ``x_support [learners, k_shot]`` (item indices),
    ``y_support [learners, k_shot]`` (0/1), ``x_query [learners, n_query]`` -> ``[learners, n_query]``.
    Derived in chapter 01, section 3.
    """
    if x_support.dim() != 2 or y_support.shape != x_support.shape:
        raise ValueError(f"x_support and y_support must both be [learners, k_shot]; got "
                         f"{tuple(x_support.shape)} and {tuple(y_support.shape)}")
    if x_query.dim() != 2 or x_query.shape[0] != x_support.shape[0]:
        raise ValueError(f"x_query must be [learners, n_query] with {x_support.shape[0]} learners, "
                         f"got {tuple(x_query.shape)}")
    if torch.isnan(y_support.float()).any():
        raise ValueError("y_support contains NaN: drop missing answers (or mask them) first")
    p = features.shape[1]
    if grid_points ** p > 2_000_000:
        raise ValueError(f"{grid_points}^{p} quadrature nodes is too many; lower grid_points")
    dt = torch.float64
    features, item_offset = features.to("cpu", dt), item_offset.to("cpu", dt)
    mean, cov = prior_mean.to("cpu", dt), prior_cov.to("cpu", dt)
    t = torch.linspace(-radius, radius, grid_points, dtype=dt)
    nodes_std = torch.cartesian_prod(*([t] * p)).reshape(-1, p)
    log_prior = -0.5 * nodes_std.pow(2).sum(1)  # trapezoid weights are uniform on the grid
    nodes = mean + nodes_std @ torch.linalg.cholesky(cov).T  # [N, P]
    logits = nodes @ features.T + item_offset  # [N, items]
    logp1, logp0, prob = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits), torch.sigmoid(logits)
    n_items = features.shape[0]
    xs, ys, xq = x_support.cpu().long(), y_support.cpu().to(dt), x_query.cpu().long()
    m = torch.ones_like(ys) if support_mask is None else support_mask.cpu().to(dt)
    # Count, per learner and item, the correct and incorrect answers in the support set.
    ones = torch.zeros(xs.shape[0], n_items, dtype=dt).scatter_add_(1, xs, ys * m)
    zeros = torch.zeros(xs.shape[0], n_items, dtype=dt).scatter_add_(1, xs, (1 - ys) * m)
    out = []
    for s in range(0, xs.shape[0], chunk):
        log_post = ones[s:s + chunk] @ logp1.T + zeros[s:s + chunk] @ logp0.T + log_prior  # [L, N]
        w = torch.softmax(log_post, dim=1)
        out.append((w @ prob).gather(1, xq[s:s + chunk]))
    return torch.cat(out).float()


# ----------------------------------------------------------------------------- tasks and splits

def fixed_query_tasks(responses: Tensor, learners: Tensor, k_shots: list[int], n_query: int, *,
                      seed: int = 0) -> dict[int, TaskBatch]:
    """One `TaskBatch` per K for the same learners: a fixed query set and nested support sets.

    Each learner's answered items are shuffled once; the first ``n_query`` form 𝒟ᵢ^q, and the
    support set for K is the next K (so 𝒟ˢ for K=2 contains 𝒟ˢ for K=1). Comparing methods over K
    on the same query answers removes one source of noise. Missing answers are never used.
    Shapes: ``x_support [learners, K]``, ``x_query [learners, n_query]``. Derived in chapter 01,
    section 2.
    """
    if responses.dim() != 2:
        raise ValueError(f"responses must be [learners, items], got {tuple(responses.shape)}")
    if not k_shots or min(k_shots) < 1:
        raise ValueError(f"k_shots must be a non-empty list of positive ints, got {k_shots}")
    if n_query < 1:
        raise ValueError(f"n_query must be >= 1, got {n_query}")
    rows = responses[learners.long()]
    answered = ~torch.isnan(rows)
    need = max(k_shots) + n_query
    counts = answered.sum(1)
    if (counts < need).any():
        bad = int(torch.nonzero(counts < need)[0])
        raise ValueError(f"K = {max(k_shots)} plus n_query = {n_query} needs {need} answered items per "
                         f"learner, but learner {int(learners[bad])} has {int(counts[bad])}; lower K or "
                         "n_query, or drop that learner")
    keys = torch.rand(rows.shape, generator=torch.Generator().manual_seed(seed))
    keys[~answered] = 2.0  # missing answers sort last and are never reached
    order = keys.argsort(1)
    x_query = order[:, :n_query]
    y_query = rows.gather(1, x_query)
    out = {}
    for k in k_shots:
        x_support = order[:, n_query:n_query + k]
        out[k] = TaskBatch(x_support, rows.gather(1, x_support), x_query, y_query)
    return out


def split_by_interaction(responses: Tensor, test_fraction: float = 0.2, *,
                         seed: int = 0) -> tuple[Tensor, Tensor]:
    """The split NOT to use for new learners: each answered cell goes to train or test at random.

    Returns boolean masks ``(train, test) [learners, items]``. Every learner lands on both sides,
    so a personalised model has already seen the "test" learners. Derived in chapter 01, section 2;
    what it costs is measured in section 5.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    answered = ~torch.isnan(responses)
    u = torch.rand(responses.shape, generator=torch.Generator().manual_seed(seed))
    test = answered & (u < test_fraction)
    return answered & ~test, test


# ----------------------------------------------------------------------------- training

def item_counts(responses: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Correct and incorrect answers per item, pooled over the learners ``rows``: two ``[items]``.

    A model that ignores who answered (the global model) depends on the pooled answers only
    through these counts. Missing answers count as neither. Derived in chapter 01, section 3.
    """
    sub = responses[rows.long()]
    return (sub == 1).sum(0).float(), (sub == 0).sum(0).float()


def pretrain(model: nn.Module, responses: Tensor, rows: Tensor, *, steps: int = 300, lr: float = 0.05,
             progress: bool = True) -> dict:
    """Transfer learning's first stage: fit θ to the pooled answers of past learners.

    Minimises Σᵢ Lᵢ(θ), the mean binary cross-entropy over every answer of every learner in
    ``rows`` (computed from the per-item counts of `item_counts`, which gives the same number),
    with full-batch Adam. Returns the loss history ``{"step": [...], "loss": [...]}``.
    Derived in chapter 01, section 3.
    """
    from tqdm.auto import tqdm

    if len(rows) == 0:
        raise ValueError("pretrain needs at least one learner in rows")
    device = next(model.parameters()).device
    n1, n0 = (t.to(device) for t in item_counts(responses, rows))
    items = torch.arange(len(n1), device=device)
    total = (n1 + n0).sum()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist: dict[str, list] = {"step": [], "loss": []}
    for step in tqdm(range(1, steps + 1), desc="pretrain (pooled answers)", disable=not progress, mininterval=0.5):
        opt.zero_grad()
        logits = model(items)
        loss = (n1 * nn.functional.softplus(-logits) + n0 * nn.functional.softplus(logits)).sum() / total
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps:
            hist["step"].append(step)
            hist["loss"].append(loss.item())
    return hist


def adapt_path(model: nn.Module, theta: dict[str, Tensor], batch: TaskBatch, *, alpha: float,
               checkpoints: list[int], adapt: list[str] | None = None) -> dict[int, dict[str, Tensor]]:
    """Gradient steps of size α from θ on every task's support set; φ after each checkpoint.

    The same inner loop as MAML (``course_lib.algorithms.inner_adapt``), vmapped over tasks, one
    step at a time so that all step counts of a grid cost one run. Returns ``{steps: φ}`` with a
    leading task dimension. Derived in chapter 01, section 3.
    """
    if not checkpoints or min(checkpoints) < 0:
        raise ValueError(f"checkpoints must be non-negative step counts, got {checkpoints}")
    loss_fn = get_loss("bce")
    phi = {k: v.detach().expand(batch.n_tasks, *v.shape).clone() for k, v in theta.items()}
    out = {0: phi} if 0 in checkpoints else {}
    mask = batch.support_mask

    def one_step(phi_i, x, y, m):
        return inner_adapt(model, phi_i, x, y, m, loss_fn=loss_fn, alpha=alpha, steps=1, adapt=adapt)

    if mask is None:
        mask = torch.ones(batch.x_support.shape[:2], dtype=torch.bool, device=batch.x_support.device)
    step = vmap(one_step)
    with torch.no_grad():
        for s in range(1, max(checkpoints) + 1):
            phi = step(phi, batch.x_support, batch.y_support, mask)
            if s in checkpoints:
                out[s] = phi
    return out


def predict_tasks(model: nn.Module, phi: dict[str, Tensor], x: Tensor) -> Tensor:
    """σ(f(xᵢ; φᵢ)) for every task (φ with a leading task dimension): ``[tasks, n]``."""
    with torch.no_grad():
        return torch.sigmoid(vmap(lambda p, x_: functional_call(model, p, (x_,)))(phi, x))


def _broadcast(theta: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """θ repeated for n tasks (no adaptation)."""
    return {k: v.detach()[None].expand(n, *v.shape) for k, v in theta.items()}


def _query_loss(pred: Tensor, batch: TaskBatch) -> float:
    """Mean query log-loss over tasks (padding ignored)."""
    mask = torch.ones_like(batch.y_query, dtype=torch.bool) if batch.query_mask is None else batch.query_mask
    ll = nn.functional.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), batch.y_query, reduction="none")
    return float((ll * mask).sum() / mask.sum())


def meta_train(model: nn.Module, responses: Tensor, rows: Tensor, inner: dict[int, tuple[float, int]], *,
               iterations: int, meta_batch: int = 32, n_query: int = 16, beta: float = 0.01,
               adapt: list[str] | None = None, seed: int = 0, progress: bool = True) -> tuple[dict[int, MAML], dict]:
    """Meta-learning: train one θ with course_lib's MAML on tasks "K answers of a past learner".

    ``inner`` maps each K to its inner loop (α, steps). Meta-iteration t uses the K at position
    t mod len(inner): it samples ``meta_batch`` learners of ``rows``, builds their tasks with
    ``course_lib.tasks.learner_tasks`` (K support answers, up to ``n_query`` query answers) and takes
    one Adam step (outer step β) on that K's MAML loss. All the `MAML` objects share ``model``, so
    there is one θ that serves every K. Returns ``({K: MAML}, history)``; the history has one mean
    loss per K every ``len(inner) * 10`` iterations. Derived in chapter 01, section 3; MAML itself
    in chapter 03.
    """
    from tqdm.auto import tqdm

    if not inner:
        raise ValueError("inner must map at least one K to its (alpha, steps)")
    if iterations < 1 or meta_batch < 1:
        raise ValueError(f"iterations and meta_batch must be >= 1, got {iterations} and {meta_batch}")
    device = next(model.parameters()).device
    learners = {k: MAML(model, loss="bce", alpha=a, steps=s, adapt=adapt) for k, (a, s) in inner.items()}
    opt = torch.optim.Adam(model.parameters(), lr=beta)
    responses, ks = responses.to("cpu"), list(inner)
    g = torch.Generator().manual_seed(seed)
    hist: dict = {"iteration": [], "loss": {k: [] for k in ks}}
    window: dict[int, list] = {k: [] for k in ks}
    every = len(ks) * 10
    bar = tqdm(range(1, iterations + 1), desc="MAML (one θ for every K)", disable=not progress, mininterval=0.5)
    for it in bar:
        k = ks[(it - 1) % len(ks)]
        pick = rows[torch.randint(len(rows), (meta_batch,), generator=g)]
        batch = learner_tasks(responses, k, pick, generator=g, max_query=n_query).to(device)
        window[k].append(learners[k].step(batch, opt).detach())
        if it % every == 0 or it == iterations:
            hist["iteration"].append(it)
            for kk in ks:
                hist["loss"][kk].append(torch.stack(window[kk]).mean().item() if window[kk] else float("nan"))
                window[kk].clear()
    return learners, hist


# ----------------------------------------------------------------------------- the study

@dataclass
class Config:
    """Settings of the study; the defaults are the chapter's."""

    n_learners: int = 1500
    n_items: int = 80
    missing_rate: float = 0.1
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    k_shots: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    n_query: int = 16
    embed_dim: int = 1
    pretrain_steps: int = 300
    pretrain_lr: float = 0.05
    alpha_grid: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    steps_grid: tuple[int, ...] = (1, 2, 5)
    maml_iterations: int = 600
    maml_meta_batch: int = 32
    maml_beta: float = 0.03
    grid_points: int = 21
    leakage_steps: int = 300
    n_examples: int = 12
    seed: int = 0

    def validate(self) -> None:
        """Raise a ValueError that says what to change if a setting cannot work."""
        if not self.k_shots or min(self.k_shots) < 1:
            raise ValueError(f"k_shots must be positive ints, got {self.k_shots}")
        if max(self.k_shots) + self.n_query > self.n_items * (1 - self.missing_rate) - 6:
            raise ValueError(f"max K = {max(self.k_shots)} plus n_query = {self.n_query} is too close to the "
                             f"~{self.n_items * (1 - self.missing_rate):.0f} answers a learner gives; "
                             "add items, lower K or n_query")
        if not self.alpha_grid or any(a <= 0 for a in self.alpha_grid):
            raise ValueError(f"alpha_grid must hold step sizes > 0, got {self.alpha_grid}")
        if not self.steps_grid or any(s < 1 for s in self.steps_grid):
            raise ValueError(f"steps_grid must hold step counts >= 1, got {self.steps_grid}")
        if min(self.maml_iterations, self.pretrain_steps, self.leakage_steps, self.maml_meta_batch) < 1:
            raise ValueError("maml_iterations, pretrain_steps, leakage_steps and maml_meta_batch must be >= 1")


ADAPT = ["head."]  # the learner's part of the model: the only parameters any method adapts


def per_learner_metrics(pred: Tensor, y: Tensor, truth: Tensor, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Per learner (row): query log-loss, accuracy, AUC and RMSE to the true probabilities.

    Vectorised over learners; each row gives the same numbers as ``course_lib.metrics.log_loss``
    and ``course_lib.metrics.auc`` on that learner (AUC is NaN for a learner whose query answers
    are all right or all wrong; `mean_ci` skips those). Shapes: ``[learners, n_query]`` each.
    Derived in chapter 01, section 4.
    """
    from scipy.stats import rankdata

    p = pred.double().cpu().numpy()
    y = y.double().cpu().numpy()
    t = truth.double().cpu().numpy()
    if p.shape != y.shape or p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred, y and truth must share one [learners, n_query] shape; got "
                         f"{p.shape}, {y.shape}, {t.shape}")
    if np.isnan(p).any() or np.isnan(y).any():
        raise ValueError("NaN in predictions or answers; drop missing answers before scoring")
    pc = np.clip(p, eps, 1 - eps)
    ll = -(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean(1)
    ranks = rankdata(p, axis=1)  # average ranks for ties, as roc_auc_score
    n_pos = y.sum(1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc_ = ((ranks * y).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc_[(n_pos == 0) | (n_neg == 0)] = np.nan
    return {"log_loss": ll, "accuracy": ((p > 0.5) == (y > 0.5)).mean(1), "auc": auc_,
            "rmse_to_truth": np.sqrt(((p - t) ** 2).mean(1))}


def _tune(model: nn.Module, theta: dict[str, Tensor], batch: TaskBatch, cfg: Config) -> tuple[float, int, float]:
    """Pick (α, steps) from the grids by mean query log-loss on validation learners."""
    best = (math.inf, None, None)
    for alpha in cfg.alpha_grid:
        path = adapt_path(model, theta, batch, alpha=alpha, checkpoints=list(cfg.steps_grid), adapt=ADAPT)
        for steps, phi in sorted(path.items()):
            loss = _query_loss(predict_tasks(model, phi, batch.x_query), batch)
            if loss < best[0] - 1e-9:
                best = (loss, alpha, steps)
    return best[1], best[2], best[0]


def run(config: Config | None = None, *, progress: bool = True, device: torch.device | str | None = None,
        **overrides) -> dict:
    """Run the chapter 01 study and return its results as a JSON-ready dict (keys may be ints).

    Schema: ``config``; ``device``; ``population`` (parameter names, prior); ``split`` (learners per
    split, learners in two splits); ``metrics`` {method: {K: {metric: [mean, lo, hi]}}} for the
    methods `METHODS` plus ``oracle`` (the true probabilities) and the metrics log_loss, accuracy,
    auc, rmse_to_truth (95 % CI over test learners); ``per_learner_log_loss`` {method: {K: [...]}};
    ``hyperparameters`` {method: {K: {alpha, steps, validation_log_loss}}}; ``histories``
    (pretraining and MAML losses); ``leakage`` (split by interaction vs by learner);
    ``objective_slice`` (both objectives along θ_pre → θ_MAML); ``examples`` (predictions for a
    few test learners); ``seconds`` (time per stage). Keyword ``overrides`` replace fields of
    ``config`` (e.g. ``run(maml_iterations=50)``).

    Everything follows from ``config.seed`` (s): learners ``make_learners(seed=s)``, split
    ``split_learners(seed=s)``, validation and test tasks ``fixed_query_tasks(seed=s+1)`` and
    ``(seed=s+2)``, the interaction split ``seed=s+3``. Derived in chapter 01, section 3.
    """
    from tqdm.auto import tqdm

    from course_lib.device import get_device

    unknown = set(overrides) - set(Config.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; the settings are "
                         f"{sorted(Config.__dataclass_fields__)}")
    cfg = Config(**{**asdict(config or Config()), **overrides})
    cfg.k_shots, cfg.fractions = tuple(cfg.k_shots), tuple(cfg.fractions)
    cfg.validate()
    device = torch.device(device) if device is not None else get_device()
    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    pop = make_learners(cfg.n_learners, cfg.n_items, missing_rate=cfg.missing_rate, seed=cfg.seed)
    split = split_learners(pop.n_learners, cfg.fractions, seed=cfg.seed)
    R, ks = pop.responses, list(cfg.k_shots)
    val_tasks = fixed_query_tasks(R, split["validation"], ks, cfg.n_query, seed=cfg.seed + 1)
    test_tasks = fixed_query_tasks(R, split["test"], ks, cfg.n_query, seed=cfg.seed + 2)
    truth = pop.prob[split["test"]].float().gather(1, test_tasks[ks[0]].x_query)
    seconds["data"] = time.perf_counter() - tic

    tic = time.perf_counter()
    model = LearnerModel(pop.public_features, cfg.embed_dim, seed=cfg.seed).to(device)
    hist_pre = pretrain(model, R, split["train"], steps=cfg.pretrain_steps, lr=cfg.pretrain_lr, progress=progress)
    theta_pre = {k: v.detach().clone() for k, v in model.named_parameters()}
    theta_zero = {k: torch.zeros_like(v) for k, v in theta_pre.items()}
    seconds["pretrain"] = time.perf_counter() - tic

    preds: dict[str, dict[int, Tensor]] = {m: {} for m in METHODS}
    hyper: dict[str, dict[int, dict]] = {"scratch": {}, "fine_tune": {}, "maml": {}}
    seconds.update(tune=0.0, bayes=0.0)
    for k in tqdm(ks, desc="tune scratch / fine-tune, Bayes", disable=not progress):
        val, test = val_tasks[k].to(device), test_tasks[k].to(device)
        # (1) global: θ_pre for everyone, no adaptation.
        preds["global"][k] = predict_tasks(model, _broadcast(theta_pre, test.n_tasks), test.x_query)
        # (2) from scratch (θ = 0) and (3) fine-tuning (θ = θ_pre): α and steps tuned on validation learners.
        tic = time.perf_counter()
        for name, theta in (("scratch", theta_zero), ("fine_tune", theta_pre)):
            alpha, steps, val_loss = _tune(model, theta, val, cfg)
            phi = adapt_path(model, theta, test, alpha=alpha, checkpoints=[steps], adapt=ADAPT)[steps]
            preds[name][k] = predict_tasks(model, phi, test.x_query)
            hyper[name][k] = {"alpha": alpha, "steps": steps, "validation_log_loss": val_loss}
        seconds["tune"] += time.perf_counter() - tic
        # (5) the Bayes-optimal posterior predictive, with the true parameters.
        tic = time.perf_counter()
        preds["bayes"][k] = bayes_predictive(pop.true_design, pop.true_offset, pop.prior_mean, pop.prior_cov,
                                             test.x_support, test.y_support, test.x_query,
                                             grid_points=cfg.grid_points).to(device)
        seconds["bayes"] += time.perf_counter() - tic

    # (4) MAML: one θ, meta-trained with fine-tuning's inner loop for each K (same α, same steps),
    # warm-started at θ_pre. At test time MAML and fine-tuning run the very same code: only θ differs.
    tic = time.perf_counter()
    meta_model = LearnerModel(pop.public_features, cfg.embed_dim, seed=cfg.seed).to(device)
    meta_model.load_state_dict(model.state_dict())
    inner = {k: (hyper["fine_tune"][k]["alpha"], hyper["fine_tune"][k]["steps"]) for k in ks}
    mamls, hist_maml = meta_train(meta_model, R, split["train"], inner, iterations=cfg.maml_iterations,
                                  meta_batch=cfg.maml_meta_batch, n_query=cfg.n_query, beta=cfg.maml_beta,
                                  adapt=ADAPT, seed=cfg.seed, progress=progress)
    theta_maml = {n: v.detach().clone() for n, v in meta_model.named_parameters()}
    for k in ks:
        val, test = val_tasks[k].to(device), test_tasks[k].to(device)
        preds["maml"][k] = predict_tasks(model, mamls[k].adapt_batch(test), test.x_query)
        hyper["maml"][k] = {"alpha": inner[k][0], "steps": inner[k][1], "validation_log_loss":
                            _query_loss(predict_tasks(model, mamls[k].adapt_batch(val), val.x_query), val)}
    seconds["maml"] = time.perf_counter() - tic

    metrics: dict[str, dict[int, dict]] = {m: {} for m in METHODS + ("oracle",)}
    per_learner_ll: dict[str, dict[int, list]] = {m: {} for m in METHODS + ("oracle",)}
    for k in ks:
        for m in METHODS + ("oracle",):
            per = per_learner_metrics(truth if m == "oracle" else preds[m][k], test_tasks[k].y_query, truth)
            metrics[m][k] = {name: list(mean_ci(v)) for name, v in per.items()}
            per_learner_ll[m][k] = per["log_loss"].tolist()

    tic = time.perf_counter()
    leakage = _leakage_study(pop, split, cfg, device, progress)
    seconds["leakage"] = time.perf_counter() - tic
    k_slice = 4 if 4 in ks else ks[0]
    slice_ = objective_slice(model, theta_pre, theta_maml, val_tasks[k_slice].to(device),
                             alpha=hyper["maml"][k_slice]["alpha"], steps=hyper["maml"][k_slice]["steps"])

    n_ex = min(cfg.n_examples, len(split["test"]))
    examples = {"learner": split["test"][:n_ex].tolist(),
                "true_params": pop.learner_params[split["test"][:n_ex]].tolist(),
                "query_items": test_tasks[ks[0]].x_query[:n_ex].tolist(),
                "query_answers": test_tasks[ks[0]].y_query[:n_ex].tolist(),
                "truth": truth[:n_ex].tolist(),
                "support_items": {k: test_tasks[k].x_support[:n_ex].tolist() for k in ks},
                "support_answers": {k: test_tasks[k].y_support[:n_ex].tolist() for k in ks},
                "pred": {m: {k: preds[m][k][:n_ex].cpu().tolist() for k in ks} for m in METHODS}}
    head_names = [f"w_{n}" for n in ("algebra", "reading", "difficulty")][: pop.public_features.shape[1]]
    head_names += [f"w_embed{d}" for d in range(cfg.embed_dim)]
    return {
        "config": asdict(cfg),
        "device": str(device),
        "population": {"checksum": responses_checksum(R),
                       "param_names": list(pop.param_names), "prior_mean": pop.prior_mean.tolist(),
                       "prior_cov": pop.prior_cov.tolist(), "n_items": pop.n_items,
                       "missing_rate": float(torch.isnan(R).float().mean())},
        "split": {name: len(ix) for name, ix in split.items()}
                 | {"learners_in_two_splits": len(set(split["train"].tolist()) & set(split["test"].tolist()))},
        "metrics": metrics,
        "per_learner_log_loss": per_learner_ll,
        "hyperparameters": hyper,
        "histories": {"pretrain": hist_pre, "maml": hist_maml},
        "theta": {"head_names": head_names,
                  "pretrain": {n: v.cpu().tolist() for n, v in theta_pre.items()},
                  "maml": {n: v.cpu().tolist() for n, v in theta_maml.items()},
                  "embedding_vs_true_loading": {
                      "pretrain": _corr(theta_pre["embed.weight"][:, 0], pop.loading),
                      "maml": _corr(theta_maml["embed.weight"][:, 0], pop.loading)}},
        "leakage": leakage,
        "objective_slice": slice_,
        "examples": examples,
        "seconds": seconds,
    }


def _corr(a: Tensor, b: Tensor) -> float:
    """|Pearson correlation| between two vectors (an embedding's sign is arbitrary)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float(abs(torch.corrcoef(torch.stack([a, b]))[0, 1]))


def _leakage_study(pop: SyntheticLearners, split: dict[str, Tensor], cfg: Config, device, progress: bool) -> dict:
    """A personalised model scored after a split by interaction (the mistake) — how good it looks.

    Fits one head wᵢ per learner plus item embeddings and offsets (a matrix-factorisation-like
    model, ridge-penalised towards 0) on 80 % of the answers of *every* train and test learner,
    then scores the other 20 % of the test learners' answers. Derived in chapter 01, section 5.
    """
    from tqdm.auto import tqdm

    R = pop.responses
    train_mask, test_mask = split_by_interaction(R, 0.2, seed=cfg.seed + 3)
    rows = torch.cat([split["train"], split["test"]]).sort().values
    y = R[rows].nan_to_num(0.0).to(device)
    w_train, w_test = train_mask[rows].float().to(device), test_mask[rows].float().to(device)
    model = LearnerModel(pop.public_features, cfg.embed_dim, seed=cfg.seed).to(device)
    heads = nn.Parameter(torch.zeros(len(rows), model.head.weight.shape[1], device=device))
    items = torch.arange(pop.n_items, device=device)
    params = [heads, model.embed.weight, model.offset.weight]
    opt = torch.optim.Adam(params, lr=0.05)

    def logits() -> Tensor:
        inputs = torch.cat([model.features[items], model.embed(items)], -1)  # [items, F]
        return heads @ inputs.T + model.offset.weight.T  # [learners, items]

    for _ in tqdm(range(cfg.leakage_steps), desc="per-learner model, split by interaction",
                  disable=not progress, mininterval=0.5):
        opt.zero_grad()
        ll = nn.functional.binary_cross_entropy_with_logits(logits(), y, weight=w_train, reduction="sum")
        (ll / w_train.sum() + 0.5 * heads.pow(2).sum() / w_train.sum()).backward()
        opt.step()
    with torch.no_grad():
        p = torch.sigmoid(logits())
    is_test = torch.isin(rows, split["test"])
    groups = [(y[i][w_test[i] > 0].cpu().numpy(), p[i][w_test[i] > 0].cpu().numpy())
              for i in torch.nonzero(is_test).flatten().tolist() if w_test[i].sum() > 0]
    seen = int((w_train[is_test].sum(1) > 0).sum())
    return {"interaction_split": {
                "log_loss": list(mean_ci([log_loss(a, b) for a, b in groups])),
                "auc": list(mean_ci([auc(a, b) for a, b in groups])),
                "test_learners_seen_in_training": seen, "test_learners": int(is_test.sum()),
                "mean_training_answers_per_test_learner": float(w_train[is_test].sum(1).mean())},
            "learner_split": {"test_learners_seen_in_training": len(set(split["test"].tolist())
                                                                    & set(split["train"].tolist())),
                              "test_learners": len(split["test"])}}


def objective_slice(model: nn.Module, theta_pre: dict[str, Tensor], theta_maml: dict[str, Tensor],
                    batch: TaskBatch, *, alpha: float, steps: int, n: int = 21) -> dict:
    """Both objectives along θ(t) = θ_pre + t (θ_MAML − θ_pre), t in [−0.5, 1.5].

    pretraining objective: mean loss of θ itself on the learners' answers (support ∪ query);
    meta objective: mean query loss after ``steps`` steps of size α on the support set.
    Derived in chapter 01, section 6.
    """
    loss_fn = get_loss("bce")
    ts = np.linspace(-0.5, 1.5, n)
    x_all = torch.cat([batch.x_support, batch.x_query], 1)
    y_all = torch.cat([batch.y_support, batch.y_query], 1)
    pre, meta = [], []
    for t in ts:
        theta = {name: theta_pre[name] + float(t) * (theta_maml[name] - theta_pre[name]) for name in theta_pre}
        with torch.no_grad():
            pre.append(float(vmap(lambda x, y: task_loss(model, theta, loss_fn, x, y))(x_all, y_all).mean()))
        phi = adapt_path(model, theta, batch, alpha=alpha, checkpoints=[steps], adapt=ADAPT)[steps]
        meta.append(_query_loss(predict_tasks(model, phi, batch.x_query), batch))
    return {"k_shot": batch.x_support.shape[1], "alpha": alpha, "steps": steps, "t": ts.tolist(),
            "pretraining_objective": pre, "meta_objective": meta}


def _jsonable(obj):
    """Turn dict keys into strings and tuples into lists, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` for a `Config` field, the value parsed to the field's type (tuples: commas)."""
    if "=" not in text:
        raise ValueError(f"--set expects name=value, got {text!r}")
    name, value = text.split("=", 1)
    fields = Config.__dataclass_fields__
    if name not in fields:
        raise ValueError(f"unknown setting {name!r}; the settings are {sorted(fields)}")
    default = getattr(Config, name)
    if isinstance(default, tuple):
        kind = type(default[0])
        return name, tuple(kind(v) for v in value.split(",") if v)
    return name, type(default)(value)


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the study, print the log-loss table, optionally write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the full result dict to this file")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting of Config, e.g. --set maml_iterations=300 --set k_shots=1,4,16")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    try:
        overrides = dict(_parse_setting(t) for t in args.set)
    except ValueError as err:
        parser.error(str(err))
    res = run(Config(**overrides), progress=not args.no_progress, device=args.device)
    ks = res["config"]["k_shots"]
    print("query log-loss, mean over test learners [95% CI half-width], by K = number of the learner's answers")
    print(f"{'method':<11}" + "".join(f"{'K=' + str(k):>16}" for k in ks))
    for m in METHODS + ("oracle",):
        cells = [res["metrics"][m][k]["log_loss"] for k in ks]
        print(f"{m:<11}" + "".join(f"{c[0]:10.4f} ±{(c[2] - c[1]) / 2:.3f}" for c in cells))
    leak = res["leakage"]["interaction_split"]
    print(f"split by interaction (the mistake): log-loss {leak['log_loss'][0]:.4f}, every one of the "
          f"{leak['test_learners']} 'test' learners seen in training")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(_jsonable(res), fh, indent=1)
        print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
