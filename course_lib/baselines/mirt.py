"""Multidimensional 2PL item response theory (MIRT): fit by marginal likelihood, ability by EAP.

Derived in chapter 05, section 8. A learner has an ability *vector* θ ∈ ℝᴰ (D = 2 or 3) with a
standard normal prior, and item j has a loading vector aⱼ ∈ ℝᴰ and an intercept dⱼ:

    P(yⱼ = 1 | θ) = σ(aⱼ · θ + dⱼ),        θ ~ N(0, I_D).

This is the exploratory MIRT a psychometrician fits before anything else (R's ``mirt(data, D)``):
the strongest non-meta baseline for predicting a new learner's answers. Item parameters maximise
the *marginal* likelihood of the training learners, θ integrated out on a product Gauss-Hermite
grid (`mirt_grid`), with L-BFGS (the same engine as `course_lib.baselines.irt.fit_2pl`, one
dimension more); a new learner's ability is the posterior mean (EAP) given their K answers. The
loadings are identified only up to a rotation (any orthogonal R gives aR, Rᵀθ the same
likelihood); predictions do not depend on it, and `explained_variance` reports rotation-free
summaries (the eigenvalues of AᵀA).

``engine="irtorch"`` fits irtorch's ``TwoParameterLogistic(latent_variables=D)`` with its ``MML``
(quasi-Monte-Carlo integration, Adam): the reference implementation, minutes instead of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from course_lib.baselines.irt import (answer_counts, grid_log_likelihood, grid_posterior,
                                     maximise_marginal_likelihood)

__all__ = ["MIRTParams", "mirt_grid", "fit_mirt", "mirt_marginal_log_likelihood", "eap_ability_mirt",
           "eap_predict_mirt", "explained_variance"]

#: Gauss-Hermite points per dimension: D = 1, 2, 3 give 61, 441, 1331 grid nodes.
POINTS_PER_DIM = {1: 61, 2: 21, 3: 11}


@dataclass(frozen=True)
class MIRTParams:
    """Fitted MIRT item parameters: loadings ``a [items, D]`` and intercepts ``d [items]`` (float32).

    logit P(correct | θ) = a θ + d. ``info``: engine, iterations, marginal log-likelihood per learner.
    """

    a: Tensor
    d: Tensor
    info: dict = field(default_factory=dict, compare=False)

    @property
    def dims(self) -> int:
        """Number of ability dimensions D."""
        return self.a.shape[1]


def mirt_grid(dims: int, points: int | None = None) -> tuple[Tensor, Tensor]:
    """Product Gauss-Hermite grid for θ ~ N(0, I_D): ``nodes [Q, D]`` and ``log_w [Q]`` (float64, Σ w = 1).

    ``points`` per dimension (default `POINTS_PER_DIM`); Q = points^D. Gauss-Hermite nodes
    integrate polynomials of degree < 2·points exactly against the normal density, so far fewer
    nodes than a uniform grid reach the same accuracy. Derived in chapter 05, section 8.
    """
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    points = POINTS_PER_DIM.get(dims, 7) if points is None else points
    if points < 2:
        raise ValueError(f"points per dimension must be >= 2, got {points}")
    z, w = np.polynomial.hermite_e.hermegauss(points)            # weight exp(-z²/2)
    log_w1 = torch.as_tensor(np.log(w / w.sum()))
    z1 = torch.as_tensor(z)
    mesh = torch.meshgrid(*([z1] * dims), indexing="ij")
    nodes = torch.stack([m.reshape(-1) for m in mesh], 1)
    log_w = sum(torch.meshgrid(*([log_w1] * dims), indexing="ij")).reshape(-1)
    return nodes, log_w


def mirt_marginal_log_likelihood(responses: Tensor, a: Tensor, d: Tensor, nodes: Tensor, log_w: Tensor) -> Tensor:
    """Σ_i log ∫ Π_j P(y_ij | θ) N(θ; 0, I) dθ on the grid, ``responses [learners, items]`` with NaN missing.

    The same two matrix products as the 2PL's (`grid_log_likelihood`), with item logits
    ``a @ nodesᵀ + d``. Derived in chapter 05, section 8.
    """
    correct = (responses == 1).to(a.dtype)
    wrong = (responses == 0).to(a.dtype)
    logits = a @ nodes.T + d[:, None]                                          # [items, Q]
    return torch.logsumexp(grid_log_likelihood(correct, wrong, logits) + log_w, 1).sum()


def _fit_torch(r: Tensor, dims: int, max_iter: int, seed: int) -> tuple[Tensor, Tensor, dict]:
    nodes, log_w = mirt_grid(dims)
    r = r.double()
    p = torch.nanmean(r, 0).clamp(0.02, 0.98)
    g = torch.Generator().manual_seed(seed)
    d = torch.logit(p).clone().requires_grad_(True)
    # Start near a one-factor solution plus a seeded perturbation (breaks the symmetry between dimensions).
    a0 = torch.full((r.shape[1], dims), 1.0 / dims ** 0.5, dtype=torch.float64)
    a = (a0 + 0.3 * torch.randn(r.shape[1], dims, generator=g, dtype=torch.float64)).requires_grad_(True)
    ll, iterations = maximise_marginal_likelihood(lambda: mirt_marginal_log_likelihood(r, a, d, nodes, log_w),
                                                  [a, d], r.shape[0], max_iter=max_iter, tolerance_grad=1e-5,
                                                  tolerance_change=1e-10)
    return a.detach(), d.detach(), {"engine": "torch", "iterations": iterations, "loglik_per_learner": ll}


def _fit_irtorch(r: Tensor, dims: int, device: str) -> tuple[Tensor, Tensor, dict]:
    from irtorch.estimation_algorithms import MML
    from irtorch.models import TwoParameterLogistic

    model = TwoParameterLogistic(items=r.shape[1], latent_variables=dims)
    algo = MML()
    model.fit(train_data=r, algorithm=algo, device=device)
    a = model.weight_param.detach().double().reshape(r.shape[1], dims).clone()
    d = model.bias_param.detach().double().reshape(-1).clone()
    nodes, log_w = mirt_grid(dims)
    with torch.no_grad():
        ll = float(mirt_marginal_log_likelihood(r.double(), a, d, nodes, log_w)) / r.shape[0]
    return a, d, {"engine": "irtorch", "iterations": len(algo.training_history["train_loss"]),
                  "loglik_per_learner": ll}


def fit_mirt(responses: Tensor, dims: int = 2, *, engine: str = "torch", max_iter: int = 300, seed: int = 0,
             device: str = "cpu") -> MIRTParams:
    """Fit exploratory MIRT item parameters (D = ``dims``) by marginal maximum likelihood.

    ``responses [learners, items]`` 1/0 with NaN for missing (left out of the likelihood).
    ``engine="torch"``: L-BFGS on the Gauss-Hermite grid of `mirt_grid` (seconds; ``seed`` draws the
    starting loadings); ``engine="irtorch"``: irtorch's multidimensional 2PL with ``MML`` (slow
    reference). Returns `MIRTParams`. Derived in chapter 05, section 8.
    """
    from course_lib.data.responses import validate_responses

    r = validate_responses(responses, name="responses")
    if not 1 <= dims <= 4:
        raise ValueError(f"dims must be 1..4 (the grid has points^dims nodes), got {dims}")
    if r.shape[0] < 2 * r.shape[1]:
        raise ValueError(f"{r.shape[0]} learners are too few to fit {r.shape[1]} items x {dims + 1} "
                         "parameters; use fewer dims or more learners")
    if engine == "torch":
        a, d, info = _fit_torch(r, dims, max_iter, seed)
    elif engine == "irtorch":
        a, d, info = _fit_irtorch(r, dims, device)
    else:
        raise ValueError(f"engine must be 'torch' or 'irtorch', got {engine!r}")
    return MIRTParams(a.float(), d.float(), info)


def _posterior(params: MIRTParams, items: Tensor, answers: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(posterior weights [learners, Q], nodes [Q, D]) of θ given the support answers."""
    items = torch.as_tensor(items).long()
    answers = torch.as_tensor(answers).float()
    if items.dim() != 2 or answers.shape != items.shape:
        raise ValueError(f"items and answers must both be [learners, K], got {tuple(items.shape)} and "
                         f"{tuple(answers.shape)}")
    if items.numel() and (items.min() < 0 or items.max() >= params.a.shape[0]):
        raise ValueError(f"item indices must lie in 0..{params.a.shape[0] - 1}")
    mask = torch.ones_like(items, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    answers = torch.where(mask, answers.nan_to_num(0.0), torch.zeros(()))
    nodes, log_w = mirt_grid(params.dims)
    logits = params.a.double() @ nodes.T + params.d.double()[:, None]
    correct, wrong = answer_counts(items, answers, mask, params.a.shape[0])
    return grid_posterior(grid_log_likelihood(correct, wrong, logits), log_w), nodes


def eap_ability_mirt(params: MIRTParams, items: Tensor, answers: Tensor, mask: Tensor | None = None) -> Tensor:
    """EAP ability vectors E[θ | K answers] ``[learners, D]`` from ``items/answers/mask [learners, K]``.

    A learner with no answer gets the prior mean 0. Derived in chapter 05, section 8.
    """
    post, nodes = _posterior(params, items, answers, mask)
    return (post @ nodes).float()


def eap_predict_mirt(params: MIRTParams, items: Tensor, answers: Tensor, mask: Tensor | None,
                     query_items: Tensor) -> Tensor:
    """Plug-in prediction σ(aⱼ · θ̂ + dⱼ) at the EAP θ̂ on ``query_items [learners, n]`` → ``[learners, n]``.

    The ``mirt_2d`` / ``mirt_3d`` baselines of chapter 05 (the multidimensional `eap_predict`).
    Derived in chapter 05, section 8.
    """
    theta = eap_ability_mirt(params, items, answers, mask)
    q = torch.as_tensor(query_items).long()
    return torch.sigmoid((params.a[q] * theta[:, None, :]).sum(-1) + params.d[q])


def explained_variance(params: MIRTParams) -> Tensor:
    """Share of the loadings' total variance Σ ‖aⱼ‖² on each principal ability dimension, descending ``[D]``.

    The eigenvalues of AᵀA (rotation-free) over their sum: a second share near 0 means the data are
    close to unidimensional. Derived in chapter 05, section 8.
    """
    a = params.a.double()
    ev = torch.linalg.eigvalsh(a.T @ a).flip(0)
    return (ev / ev.sum()).float()
