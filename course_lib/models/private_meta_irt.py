"""Chapter 05's meta-IRT trained with learner-level differential privacy (chapter 09, section 2).

The recipe of `course_lib.models.meta_irt.train_meta_irt` with three changes that privacy needs:
meta-batches are Poisson samples of the training learners (rate q = meta_batch / N), every update
is `course_lib.algorithms.private.private_step` (per-learner clipping to C and Gaussian noise σC),
and the item intercepts start at 0 instead of the items' share correct (that statistic of the
training answers would otherwise leak unaccounted). σ is calibrated to a target ε with Opacus;
δ = 1 / N.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from course_lib.algorithms import MAML
from course_lib.algorithms.private import DPConfig, dp_epsilon, noise_for_epsilon, private_step
from course_lib.models.meta_irt import MetaIRT, MetaIRTConfig
from course_lib.tasks import learner_tasks

__all__ = ["train_private_meta_irt"]


def train_private_meta_irt(responses: Tensor, learners: Tensor, k_range: tuple[int, int], epsilon: float, *,
                           clip: float = 1.0, config: MetaIRTConfig = MetaIRTConfig(), iterations: int = 300,
                           seed: int = 0, progress: bool = False) -> tuple[MAML, dict]:
    """MAML on `MetaIRT` with (ε, δ = 1/N)-DP at the learner level; ε = ``math.inf``: no clip, no noise.

    Each iteration draws every learner of ``learners`` with probability q = ``config.meta_batch`` / N
    and K from ``k_range``. Returns the trained meta-learner and a report ``{epsilon (spent, from
    Opacus), target_epsilon, delta, noise_multiplier, clip, sample_rate, iterations, max_grad_norm}``.
    Derived in chapter 09, section 2.
    """
    from tqdm.auto import tqdm

    learners = torch.as_tensor(learners).long()
    n = len(learners)
    if n == 0:
        raise ValueError("no training learners: private training needs at least one")
    k_min, k_max = k_range
    usable = learners[(~torch.isnan(responses[learners])).sum(1) > k_max]
    if len(usable) < n:
        raise ValueError(f"{n - len(usable)} learners have <= k_max = {k_max} answers; drop them first (the "
                         "accounting assumes every learner can be sampled)")
    q = min(config.meta_batch / n, 1.0)
    delta = 1.0 / n
    private = not math.isinf(epsilon)
    sigma = noise_for_epsilon(epsilon, delta, q, iterations)
    dp = DPConfig(clip=clip if private else math.inf, noise_multiplier=sigma, sample_rate=q, delta=delta)
    model = MetaIRT(responses.shape[1], config.dims, seed=seed)
    maml = MAML(model, loss="bce", alpha=config.alpha, steps=config.steps, adapt=["ability"])
    opt = torch.optim.Adam(maml.parameters(), lr=config.beta)
    g, noise_g = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    max_norm = 0.0
    for _ in tqdm(range(iterations), desc=f"DP MAML, ε={epsilon:g}", disable=not progress, mininterval=0.5):
        k_shot = int(torch.randint(k_min, k_max + 1, (1,), generator=g))
        chosen = learners[torch.rand(n, generator=g) < q]
        batch = learner_tasks(responses, k_shot, chosen, generator=g, max_query=config.max_query) if len(chosen) \
            else None  # an empty Poisson sample: the update is the noise alone
        # the private mean divides by the expected batch q N; without privacy, by the batch itself
        denominator = q * n if private else max(len(chosen), 1)
        max_norm = max(max_norm, float(private_step(maml, batch, opt, dp, denominator, noise_g)))
    report = {"epsilon": dp_epsilon(sigma, q, iterations, delta), "target_epsilon": epsilon, "delta": delta,
              "noise_multiplier": sigma, "clip": dp.clip, "sample_rate": q, "iterations": iterations,
              "max_grad_norm": max_norm}
    return maml, report

