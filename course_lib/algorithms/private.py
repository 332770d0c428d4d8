"""Learner-level differentially private meta-training (DP-SGD on the MAML meta-gradient).

Derived in chapter 09, section 2. Each learner is one task of the meta-batch, so bounding what one
*task* can do to an update bounds what one *learner* can do (learner-level privacy, not answer-level):

1. Poisson sampling: every training learner joins the meta-batch independently with probability q;
2. per-task meta-gradients gᵢ = ∇_θ L(φᵢ(θ); 𝒟ᵢ^q), all at once with ``vmap`` over tasks;
3. clipping: ḡᵢ = gᵢ · min(1, C / ‖gᵢ‖₂), the norm taken over all of θ together;
4. noise: g̃ = (Σᵢ ḡᵢ + 𝒩(0, σ²C² I)) / (q N), the expected batch size in the denominator;
5. θ ← Adam(θ, g̃): anything done to g̃ afterwards is post-processing and costs no privacy.

The privacy loss of T such steps is accounted with Opacus's Rényi-DP accountant for the subsampled
Gaussian mechanism (`dp_epsilon`; δ = 1 / N by the course's convention), and `noise_for_epsilon`
finds the σ that meets a target ε. With C = ∞ and σ = 0 step 4 is the plain mean of the per-task
meta-gradients, i.e. ordinary MAML (a test checks this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from course_lib.algorithms.functional import LossFn, Params, batch_args, split_params, task_loss
from course_lib.algorithms.maml import inner_adapt, inner_rates
from course_lib.tasks import TaskBatch

__all__ = ["DPConfig", "per_task_meta_gradients", "clip_per_task", "privatize", "private_step", "dp_epsilon",
           "noise_for_epsilon", "check_epsilon"]


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings: ``clip`` C (``math.inf``: no clipping), ``noise_multiplier`` σ (noise std is σC),
    ``sample_rate`` q (each learner's chance to be in a meta-batch), ``delta`` δ. Chapter 09, section 2."""

    clip: float
    noise_multiplier: float
    sample_rate: float
    delta: float

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ValueError(f"clip (C, the per-learner gradient bound) must be > 0, got {self.clip}")
        if not self.noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier (σ) must be >= 0, got {self.noise_multiplier}")
        if self.noise_multiplier > 0 and math.isinf(self.clip):
            raise ValueError("noise without clipping protects nothing: give a finite clip C when σ > 0")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate (q) must be in (0, 1], got {self.sample_rate}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1); the course uses 1 / number of learners, got {self.delta}")


def per_task_meta_gradients(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
                            alpha: float | Params, steps: int, first_order: bool = False,
                            adapt: list[str] | None = None) -> Params:
    """gᵢ = ∇_θ L(φᵢ(θ); 𝒟ᵢ^q) for every task: each entry ``[tasks, *parameter shape]``.

    One ``vmap`` over tasks of ``grad`` of the per-task MAML objective (the inner loop of
    `course_lib.algorithms.maml.inner_adapt` inside). Their mean is `maml_loss`'s gradient.
    Derived in chapter 09, section 2.
    """
    fast, _ = split_params(theta, adapt)
    rates = inner_rates(alpha, fast)
    theta = {name: v.detach() for name, v in theta.items()}

    def one_task(theta_: Params, xs: Tensor, ys: Tensor, ms: Tensor, xq: Tensor, yq: Tensor, mq: Tensor) -> Tensor:
        phi = inner_adapt(model, theta_, xs, ys, ms, loss_fn=loss_fn, alpha=rates, steps=steps,
                          first_order=first_order, adapt=adapt)
        return task_loss(model, phi, loss_fn, xq, yq, mq)

    return vmap(grad(one_task), in_dims=(None, 0, 0, 0, 0, 0, 0), randomness="different")(theta, *batch_args(batch))


def clip_per_task(grads: Params, clip: float) -> tuple[Params, Tensor]:
    """ḡᵢ = gᵢ · min(1, C / ‖gᵢ‖₂) with the norm over all parameters of task i; returns (ḡ, ‖g‖ ``[tasks]``).

    ``clip = math.inf`` leaves the gradients unchanged. Derived in chapter 09, section 2.
    """
    norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads.values()))
    if math.isinf(clip):
        return dict(grads), norms
    scale = (clip / (norms + 1e-12)).clamp(max=1.0)
    return {name: g * scale.reshape(-1, *[1] * (g.dim() - 1)) for name, g in grads.items()}, norms


def privatize(grads: Params, clip: float, noise_multiplier: float, expected_batch: float,
              generator: torch.Generator | None = None) -> Params:
    """g̃ = (Σᵢ clip(gᵢ) + 𝒩(0, σ²C²)) / (expected batch): the released, private meta-gradient.

    ``grads`` entries ``[tasks, ...]`` (tasks may be 0: then g̃ is the noise alone); the result has
    each parameter's shape. The noise is drawn on the CPU from ``generator`` (repeatable runs).
    Derived in chapter 09, section 2.
    """
    if not expected_batch > 0:
        raise ValueError(f"expected_batch (q · N) must be > 0, got {expected_batch}")
    clipped, _ = clip_per_task(grads, clip)
    out = {}
    for name, g in clipped.items():
        total = g.sum(0)
        if noise_multiplier > 0:
            noise = torch.randn(total.shape, generator=generator, dtype=total.dtype) * (noise_multiplier * clip)
            total = total + noise.to(total.device)
        out[name] = total / expected_batch
    return out


def private_step(maml, batch: TaskBatch | None, optimizer: torch.optim.Optimizer, dp: DPConfig, expected_batch: float,
                 generator: torch.Generator | None = None) -> Tensor:
    """One DP meta-update of a `course_lib.algorithms.MAML` (θ only; not Meta-SGD): per-task
    meta-gradients, `privatize`, then ``optimizer.step()``. ``batch=None`` is an empty Poisson
    sample: the update is the noise alone. Returns the largest per-task norm ‖gᵢ‖ before clipping
    (what a choice of C is judged by). Derived in chapter 09, section 2.
    """
    if getattr(maml, "meta_sgd", False):
        raise ValueError("private_step supports MAML / FOMAML (fixed α); Meta-SGD's learned α would need "
                         "its own clipping")
    theta = maml.theta
    if batch is None:
        grads = {name: torch.zeros(0, *v.shape, dtype=v.dtype, device=v.device) for name, v in theta.items()}
    else:
        grads = per_task_meta_gradients(maml.model, theta, batch, loss_fn=maml.loss_fn, alpha=maml._rates(),
                                        steps=maml.steps, first_order=maml.first_order, adapt=maml.adapt_prefixes)
    _, norms = clip_per_task(grads, math.inf)
    for name, g in privatize(grads, dp.clip, dp.noise_multiplier, expected_batch, generator).items():
        theta[name].grad = g
    optimizer.step()
    return norms.max() if norms.numel() else torch.zeros(())


def check_epsilon(epsilon: float) -> float:
    """ε as a float, or a ValueError: ε must be > 0 (``math.inf`` means no privacy guarantee)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or math.isnan(epsilon) or not epsilon > 0:
        raise ValueError(f"epsilon must be a number > 0 (smaller = more private; math.inf = not private), "
                         f"got {epsilon!r}")
    return float(epsilon)


#: Rényi orders the accountant searches: Opacus's defaults plus larger ones, which the small σ of
#: ε ≈ 8 needs (with the defaults alone Opacus warns that the best order is the largest one).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [64, 80, 96, 128, 192, 256, 384, 512]


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` subsampled Gaussian steps, from Opacus's RDP accountant (∞ when σ = 0).

    Derived in chapter 09, section 2 (the orders searched are `RDP_ORDERS`).
    """
    from opacus.accountants import RDPAccountant

    if noise_multiplier == 0:
        return math.inf
    accountant = RDPAccountant()
    accountant.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(accountant.get_epsilon(delta=delta, alphas=RDP_ORDERS))


def noise_for_epsilon(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest σ (to Opacus's tolerance 0.01 in ε) whose ``steps`` steps spend at most ε; 0 for ε = ∞."""
    from opacus.accountants.utils import get_noise_multiplier

    epsilon = check_epsilon(epsilon)
    if math.isinf(epsilon):
        return 0.0
    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant="rdp", alphas=RDP_ORDERS))
