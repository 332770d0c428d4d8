"""Learner models for cold start: a meta-learned IRT model and a nearest-past-learners predictor.

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

`NearestLearners` is the metric-based alternative: no parameters adapt; a new learner is
compared with the past (training) learners on the items they both answered and their
neighbours' answers are the prediction (a nearest-prototype classifier when the "prototypes" are
past learners).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MetaIRT", "NearestLearners"]


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


class NearestLearners:
    """Predict a new learner's answers from the past learners who answered their K items alike.

    ``past [learners, items]`` (1/0, NaN missing) are the training learners. For a new learner
    with support answers y_S, the distance to past learner m is the mean squared difference on
    the support items m answered; the ``k`` nearest (ties broken by index) are averaged with
    weights exp(−distance / ``temperature``), and the prediction for item j is their weighted
    share correct on j, shrunk towards the item's overall share with ``prior_weight``
    pseudo-learners. Derived in chapter 05, section 5 (metric-based meta-learning, chapter 02).
    """

    def __init__(self, past: Tensor, k: int = 50, temperature: float = 0.1, prior_weight: float = 1.0) -> None:
        from course_lib.data.responses import validate_responses

        self.past = validate_responses(past, name="past learners")
        if not 1 <= k <= self.past.shape[0]:
            raise ValueError(f"k must be in 1..{self.past.shape[0]} (the number of past learners), got {k}")
        if temperature <= 0 or prior_weight < 0:
            raise ValueError(f"need temperature > 0 and prior_weight >= 0, got {temperature}, {prior_weight}")
        self.k, self.temperature, self.prior_weight = k, temperature, prior_weight
        answered = ~torch.isnan(self.past)
        self._y = self.past.nan_to_num(0.0)
        self._m = answered.float()
        self._item_mean = (self._y.sum(0) + 1) / (self._m.sum(0) + 2)

    def distances(self, items: Tensor, answers: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean squared difference to every past learner on the support items: ``[learners, past]``.

        Computed with three matrix products over dense ``[learners, items]`` support matrices; a past
        learner who answered none of the support items gets distance 1 (the maximum).
        """
        items = torch.as_tensor(items).long()
        mask = torch.ones_like(items, dtype=torch.bool) if mask is None else mask
        L, n_items = items.shape[0], self.past.shape[1]
        s = torch.zeros(L, n_items).scatter_(1, items, mask.float())                  # support indicator
        ys = torch.zeros(L, n_items).scatter_(1, items, torch.where(mask, answers.float(), 0.0))
        # Σ_j s_j m_j (y_j − r_j)² = (s y²) m^T − 2 (s y) (m r)^T + s (m r²)^T  (y, r ∈ {0, 1})
        sq = ys @ self._m.T - 2 * ys @ (self._m * self._y).T + s @ (self._m * self._y).T
        overlap = s @ self._m.T
        return torch.where(overlap > 0, sq / overlap.clamp_min(1.0), torch.ones(()))

    def predict(self, items: Tensor, answers: Tensor, mask: Tensor | None, query_items: Tensor,
                distances: Tensor | None = None) -> Tensor:
        """P(correct) on ``query_items [learners, n]`` from support ``items/answers/mask [learners, K]``.

        ``distances`` (from `distances`) can be passed to reuse them across settings of k / temperature.
        """
        dist = self.distances(items, answers, mask) if distances is None else distances
        top = dist.topk(self.k, dim=1, largest=False)
        w = torch.softmax(-top.values / self.temperature, dim=1) * self.k              # [L, k]
        weights = torch.zeros(dist.shape).scatter_(1, top.indices, w)                 # [L, past], sparse rows
        q = torch.as_tensor(query_items).long()
        num = weights @ self._y                                                        # Σ_m w_m y_mj
        den = weights @ self._m                                                        # Σ_m w_m [m answered j]
        p = (num + self.prior_weight * self._item_mean) / (den + self.prior_weight)
        return p.gather(1, q)
