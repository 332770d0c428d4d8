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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MetaIRT"]


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
