"""The meta-learned IRT model: item parameters shared by all learners, an ability adapted per learner.

Derived in chapter 05, sections 4-5.

`MetaIRT` is the 2PL model written as an ``nn.Module`` whose *item* parameters (loadings aⱼ,
intercepts dⱼ) are meta-parameters shared by every learner, and whose *learner* parameter
(the ability vector, ``dims`` numbers) is the only thing adapted in the inner loop:

    logit P(yⱼ = 1) = aⱼ · φ + dⱼ,       φ = θ_ability − α ∇ L(θ_ability; 𝒟ˢ)   (one step).

For one dimension the inner gradient is −(1/K) Σ_{j∈𝒟ˢ} aⱼ (yⱼ − pⱼ): the same score function
that ability estimation in IRT sets to zero, and one step from the meta-learned starting point is
a damped Newton / MAP step with the prior mean θ_ability. So MAML on this model *is* IRT ability
estimation in disguise; what it adds is that the starting point (the prior mean), the step size
(through the scale of a, or a learned α in Meta-SGD: a prior precision) and extra ability
dimensions are all fitted to make the *prediction after adaptation* good.

The training recipe lives here once and is used by chapter 05 (`train_per_k_shot`: one model per
K, the MAML protocol) and chapter 07 (`train_meta_irt` with K drawn from a range, because an
adaptive test adapts after 1, 2, ..., n answers): `MetaIRTConfig` holds the settings,
`META_LEARNERS` maps a method name (maml, fomaml, meta_sgd, reptile) to the learner it builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["MetaIRT", "MetaIRTConfig", "META_LEARNERS", "make_meta_learner", "train_meta_irt",
           "train_per_k_shot", "meta_predict"]


class MetaIRT(nn.Module):
    """Multidimensional 2PL as a network: logits = item_a[x] · ability + item_d[x].

    Parameters: ``item_a [items, dims]`` (loadings / discriminations), ``item_d [items]``
    (intercepts, easiness), ``ability [dims]`` (the learner; adapted in the inner loop with
    ``MAML(..., adapt=["ability"])``). Input ``x [n]`` item indices (long); output ``[n]`` logits.
    ``init_d`` (e.g. logit of the items' share correct) and a seeded random ``item_a`` near 1
    (symmetry breaking between dimensions) start the meta-training. Derived in chapter 05, section 4.
    """

    def __init__(self, n_items: int, dims: int = 1, *, init_d: Tensor | None = None, seed: int = 0,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        if n_items < 1 or dims < 1:
            raise ValueError(f"need n_items >= 1 and dims >= 1, got {n_items}, {dims}")
        g = torch.Generator().manual_seed(seed)
        a = init_scale / dims ** 0.5 * (1.0 + 0.5 * torch.randn(n_items, dims, generator=g))
        self.item_a = nn.Parameter(a)
        d = torch.zeros(n_items) if init_d is None else torch.as_tensor(init_d, dtype=torch.float32).clone()
        if d.shape != (n_items,):
            raise ValueError(f"init_d must have shape [{n_items}], got {tuple(d.shape)}")
        self.item_d = nn.Parameter(d)
        self.ability = nn.Parameter(torch.zeros(dims))

    @property
    def dims(self) -> int:
        """Number of ability dimensions."""
        return self.ability.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a correct answer on items ``x [n]`` for the learner in ``ability``: ``[n]``."""
        return self.item_a[x] @ self.ability + self.item_d[x]


@dataclass(frozen=True)
class MetaIRTConfig:
    """Meta-training settings of `MetaIRT` for MAML, FOMAML, Meta-SGD and Reptile.

    ``dims`` ability dimensions; MAML-family inner loop: step ``alpha`` (α), ``steps`` inner steps;
    Reptile's inner loop: ``reptile_alpha``, ``reptile_steps``; outer loop: Adam with step ``beta``
    (β) on meta-batches of ``meta_batch`` learners with at most ``max_query`` query answers each,
    ``iterations`` meta-iterations (``warm_iterations`` for a model warm-started from another K's).
    """

    dims: int = 2
    alpha: float = 1.0
    steps: int = 3
    meta_batch: int = 64
    max_query: int = 40
    iterations: int = 200
    warm_iterations: int = 60
    beta: float = 0.03
    reptile_alpha: float = 1.0
    reptile_steps: int = 5

    def __post_init__(self) -> None:
        bad = [f.name for f in dataclasses.fields(self) if not getattr(self, f.name) > 0]
        if bad:
            raise ValueError(f"MetaIRTConfig settings must be > 0; fix {bad}")


def _maml(**options) -> Callable:
    def make(model: nn.Module, cfg: MetaIRTConfig):
        from course_lib.algorithms import MAML
        return MAML(model, loss="bce", alpha=cfg.alpha, steps=cfg.steps, adapt=["ability"], **options)
    return make


def _reptile(model: nn.Module, cfg: MetaIRTConfig):
    # Reptile moves θ towards the adapted φ, so the item parameters must adapt in the inner loop
    # too (with adapt=["ability"] they would never change); only the ability matters at test time.
    from course_lib.algorithms import Reptile
    return Reptile(model, loss="bce", alpha=cfg.reptile_alpha, steps=cfg.reptile_steps, adapt=None)


#: method name -> (model, config) -> meta-learner. Derived in chapter 05, section 4.
META_LEARNERS: dict[str, Callable] = {"maml": _maml(), "fomaml": _maml(first_order=True),
                                      "meta_sgd": _maml(meta_sgd=True), "reptile": _reptile}


def make_meta_learner(method: str, model: nn.Module, config: MetaIRTConfig):
    """The meta-learner ``method`` (a key of `META_LEARNERS`) wrapped around ``model``."""
    if method not in META_LEARNERS:
        raise ValueError(f"unknown meta-learner {method!r}; choose from {sorted(META_LEARNERS)}")
    return META_LEARNERS[method](model, config)


def train_meta_irt(method: str, responses: Tensor, learners: Tensor, k_shot: int | tuple[int, int],
                   config: MetaIRTConfig = MetaIRTConfig(), *, iterations: int | None = None, seed: int = 0,
                   fit_seed: int | None = None, init=None, progress: bool = True,
                   device: torch.device | str = "cpu", learner_weights: Tensor | None = None):
    """Meta-train `MetaIRT` with ``method`` on the ``learners`` (rows of ``responses [learners, items]``).

    Each meta-batch draws ``config.meta_batch`` learners (with replacement) and K support answers
    each: ``k_shot`` an int, or a range ``(k_min, k_max)`` from which one K is drawn per meta-batch
    (only learners with more than k_max answers are drawn). ``init`` (a learner from another K)
    warm-starts θ and, for Meta-SGD, the learned α. ``seed`` seeds the model's initial item
    loadings, ``fit_seed`` (default ``seed``) the stream of meta-batches. Returns the trained
    meta-learner (its ``model`` is the `MetaIRT`). ``learner_weights [len(learners)]`` (non-negative)
    draws the meta-batch learners in proportion to them instead of uniformly, e.g.
    `course_lib.fairness.balanced_weights` for group-balanced task sampling (chapter 09, section 3.3).
    Derived in chapter 05, section 4 and chapter 07, section 3.
    """
    k_min, k_max = (k_shot, k_shot) if isinstance(k_shot, int) else (int(k_shot[0]), int(k_shot[1]))
    if not 1 <= k_min <= k_max:
        raise ValueError(f"k_shot must be >= 1 (or a range 1 <= k_min <= k_max), got {k_shot}")
    p = torch.nanmean(responses[learners], 0).clamp(0.02, 0.98)
    model = MetaIRT(responses.shape[1], config.dims, init_d=torch.logit(p), seed=seed)
    if init is not None:
        model.load_state_dict(init.model.state_dict())
    learner = make_meta_learner(method, model.to(device), config)
    if getattr(learner, "alphas", None) and getattr(init, "alphas", None):
        for name, a in learner.alphas.items():
            a.data.copy_(init.alphas[name].detach())
    enough = (~torch.isnan(responses[learners])).sum(1) > k_max
    usable = learners[enough]
    weights = None if learner_weights is None else _check_weights(learner_weights, len(learners))[enough]

    def sample(g: torch.Generator) -> TaskBatch:
        k_drawn = k_min if k_min == k_max else int(torch.randint(k_min, k_max + 1, (1,), generator=g))
        draw = (torch.randint(len(usable), (config.meta_batch,), generator=g) if weights is None
                else torch.multinomial(weights, config.meta_batch, replacement=True, generator=g))
        ix = usable[draw]
        return learner_tasks(responses, k_drawn, ix, generator=g, max_query=config.max_query).to(device)

    iterations = config.iterations if iterations is None else iterations
    opt = torch.optim.Adam(learner.parameters(), lr=config.beta)
    learner.fit(sample, iterations, seed=seed if fit_seed is None else fit_seed, progress=progress, optimizer=opt,
                log_every=max(iterations // 4, 1))
    return learner


def _check_weights(learner_weights: Tensor, n_learners: int) -> Tensor:
    w = torch.as_tensor(learner_weights, dtype=torch.float32).flatten()
    if w.shape != (n_learners,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"learner_weights must be {n_learners} finite non-negative numbers (one per learner in "
                         f"`learners`) with a positive sum; got shape {tuple(w.shape)}")
    return w


def train_per_k_shot(method: str, responses: Tensor, learners: Tensor, k_shots: Sequence[int],
                     config: MetaIRTConfig = MetaIRTConfig(), *, seed: int = 0, progress: bool = True,
                     device: torch.device | str = "cpu", learner_weights: Tensor | None = None) -> dict[int, object]:
    """One meta-learner per K (the MAML protocol), each warm-started from the previous K's.

    The smallest K trains for ``config.iterations``, every later one for ``config.warm_iterations``;
    the meta-batches of K are seeded by ``seed + 1000 K``; ``learner_weights`` as in `train_meta_irt`.
    Returns ``{K: meta-learner}``.
    Derived in chapter 05, section 4.
    """
    out: dict[int, object] = {}
    prev = None
    for i, k_shot in enumerate(sorted(k_shots)):
        iterations = config.iterations if i == 0 else config.warm_iterations
        prev = out[k_shot] = train_meta_irt(method, responses, learners, k_shot, config, iterations=iterations,
                                            seed=seed, fit_seed=seed + 1000 * k_shot, init=prev, progress=progress,
                                            device=device, learner_weights=learner_weights)
    return out


def meta_predict(learner, batch: TaskBatch) -> Tensor:
    """P(correct) on the query items after adapting on the support answers: ``[tasks, n_query]`` (CPU)."""
    device = next(iter(learner.theta.values())).device
    batch = batch.to(device)
    phi = learner.adapt_batch(batch)
    return torch.sigmoid(learner.predict_batch(phi, batch.x_query)).detach().cpu()
