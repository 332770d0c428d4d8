"""Synthetic learners from a (multidimensional) 2PL IRT model with known parameters.

Derived in chapter 05, section 2; card: ``datasets/synthetic_irt.md``. Learner i has an ability
vector θᵢ ~ N(0, Σ) (Σ has unit variances and correlation ``correlation`` between dimensions);
item j has loadings aⱼ (discriminations) and intercept dⱼ; the answer is

    P(yᵢⱼ = 1) = σ(aⱼ · θᵢ + dⱼ)       (for one dimension: σ(aⱼ(θᵢ − bⱼ)), bⱼ = −dⱼ / aⱼ).

Because the true parameters are known, the Bayes-optimal prediction of a new learner's answers
from K of them (the posterior predictive, by quadrature over θ) is computable: the ceiling no
method can beat on these data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from course_lib.data.responses import ResponseData, responses_checksum, validate_responses

__all__ = ["SyntheticIRT", "sample_2pl", "sample_like", "STUDY_SHA256"]

#: `responses_checksum` of ``sample_2pl(2000, 60, missing_rate=0.05, seed=0).responses``, the
#: cold-start study's synthetic data (``datasets/synthetic_irt.md``).
STUDY_SHA256 = "3baaf4132581db5e4567dcecea4f2bc4d64c763ca035c5bcfbe10f51c73b17bc"


@dataclass(frozen=True)
class SyntheticIRT:
    """Simulated responses and the parameters that generated them.

    ``responses [learners, items]`` (1/0, NaN missing), ``theta [learners, dims]`` true abilities,
    ``a [items, dims]`` loadings, ``d [items]`` intercepts, ``prob [learners, items]`` the true
    P(correct), ``correlation`` between ability dimensions, ``seed`` used.
    """

    responses: Tensor
    theta: Tensor
    a: Tensor
    d: Tensor
    prob: Tensor
    correlation: float
    seed: int

    @property
    def dims(self) -> int:
        """Number of ability dimensions."""
        return self.a.shape[1]

    @property
    def b(self) -> Tensor:
        """Difficulties b = −d/a (one dimension only)."""
        if self.dims != 1:
            raise ValueError("difficulty b = -d/a is defined for one ability dimension; use a and d")
        return -self.d / self.a[:, 0]

    @property
    def covariance(self) -> Tensor:
        """Σ, the ability covariance ``[dims, dims]`` (unit variances)."""
        D = self.dims
        return torch.full((D, D), self.correlation) + (1 - self.correlation) * torch.eye(D)

    def to_response_data(self) -> ResponseData:
        """The responses as a `ResponseData` (items named i01.., ``group`` = dimension of the largest loading)."""
        items = pd.DataFrame({"name": [f"i{j + 1:02d}" for j in range(self.a.shape[0])],
                              "group": [f"dim{int(k) + 1}" for k in self.a.abs().argmax(1)],
                              "d": self.d.numpy()})
        for k in range(self.dims):
            items[f"a{k + 1}"] = self.a[:, k].numpy()
        name = "synthetic_2pl" if self.dims == 1 else f"synthetic_{self.dims}d_2pl"
        return ResponseData(name=name, responses=self.responses, items=items,
                            learners=pd.DataFrame(self.theta.numpy(),
                                                  columns=[f"theta{k + 1}" for k in range(self.dims)]),
                            checksum=responses_checksum(self.responses),
                            source=f"course_lib.data.synthetic.sample_2pl(seed={self.seed})")

    def posterior_predictive(self, items: Tensor, answers: Tensor, mask: Tensor | None,
                             query_items: Tensor, n_quad: int | None = None) -> Tensor:
        """Bayes-optimal P(correct) on ``query_items [learners, n]`` given K answers, true parameters.

        Integrates θ over its posterior N(0, Σ) × Π P(answers | θ) on a tensor-product grid
        (61 points per axis on ±6 for one dimension, 41 on ±5 for two, 21 on ±4.5 for three).
        ``items``, ``answers``, ``mask``: ``[learners, k]``. Derived in chapter 05, section 3.
        """
        D = self.dims
        if D > 3:
            raise ValueError("the quadrature ceiling is implemented for up to 3 ability dimensions")
        n_quad = n_quad or {1: 61, 2: 41, 3: 21}[D]
        width = {1: 6.0, 2: 5.0, 3: 4.5}[D]
        axis = torch.linspace(-width, width, n_quad, dtype=torch.float64)
        nodes = torch.tensor(list(itertools.product(axis.tolist(), repeat=D)), dtype=torch.float64)  # [Q, D]
        cov = self.covariance.double()
        log_w = torch.distributions.MultivariateNormal(torch.zeros(D, dtype=torch.float64), cov).log_prob(nodes)
        from course_lib.baselines.irt import answer_counts, grid_log_likelihood, grid_posterior

        logits = self.a.double() @ nodes.T + self.d.double()[:, None]           # [items, Q]
        correct, wrong = answer_counts(items, answers, mask, self.a.shape[0])
        post = grid_posterior(grid_log_likelihood(correct, wrong, logits), log_w)  # [L, Q]
        p = post @ torch.sigmoid(logits).T                                      # [L, items]
        return p.gather(1, torch.as_tensor(query_items).long()).float()


def sample_2pl(n_learners: int = 2000, n_items: int = 60, *, dims: int = 1, correlation: float = 0.0,
               structure: str = "simple", missing_rate: float = 0.0, a_log_sd: float = 0.35,
               seed: int = 0) -> SyntheticIRT:
    """Simulate learners answering items under a (multidimensional) 2PL model, with known parameters.

    Loadings: each item's main loading is LogNormal(0, ``a_log_sd``) (median 1); with
    ``structure="simple"`` item j measures only dimension j mod dims (like test sections), with
    ``"full"`` every item also loads 0.3 x LogNormal on the other dimensions. Difficulties
    bⱼ ~ N(0, 1), intercept dⱼ = −‖aⱼ‖ bⱼ. Abilities θ ~ N(0, Σ). Each answer is then dropped
    (set to NaN) with probability ``missing_rate`` (missing completely at random), keeping at least
    two answers per learner. Seeded by ``seed`` only. Derived in chapter 05, section 2.
    """
    if n_learners < 2 or n_items < 2:
        raise ValueError(f"need at least 2 learners and 2 items, got {n_learners} x {n_items}")
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if not -1 / max(dims - 1, 1) < correlation < 1 and dims > 1:
        raise ValueError(f"correlation {correlation} does not give a valid covariance for {dims} dimensions")
    if structure not in ("simple", "full"):
        raise ValueError(f"structure must be 'simple' or 'full', got {structure!r}")
    if not 0 <= missing_rate < 0.9:
        raise ValueError(f"missing_rate must be in [0, 0.9), got {missing_rate}")
    g = torch.Generator().manual_seed(seed)
    main = torch.exp(a_log_sd * torch.randn(n_items, generator=g))
    a = torch.zeros(n_items, dims)
    a[torch.arange(n_items), torch.arange(n_items) % dims] = main
    if structure == "full" and dims > 1:
        extra = 0.3 * torch.exp(a_log_sd * torch.randn(n_items, dims, generator=g))
        a = torch.where(a > 0, a, extra)
    b = torch.randn(n_items, generator=g)
    d = -a.norm(dim=1) * b
    cov = torch.full((dims, dims), float(correlation)) + (1 - correlation) * torch.eye(dims)
    theta = torch.randn(n_learners, dims, generator=g) @ torch.linalg.cholesky(cov).T
    prob = torch.sigmoid(theta @ a.T + d)
    responses = (torch.rand(n_learners, n_items, generator=g) < prob).float()
    if missing_rate > 0:
        drop = torch.rand(n_learners, n_items, generator=g) < missing_rate
        keep = torch.rand(n_learners, n_items, generator=g).argsort(1)[:, :2]
        short = (~drop).sum(1) < 2                    # learners left with < 2 answers keep two
        drop[short] = drop[short].scatter(1, keep[short], False)
        responses[drop] = float("nan")
    responses = validate_responses(responses, name="synthetic responses")
    return SyntheticIRT(responses=responses, theta=theta, a=a, d=d, prob=prob,
                        correlation=float(correlation), seed=seed)


def sample_like(a: Tensor, d: Tensor, missing: Tensor, *, seed: int = 0) -> SyntheticIRT:
    """Simulate learners from *given* item parameters, with a real matrix's pattern of missing answers.

    ``a [items, dims]``, ``d [items]`` (e.g. a MIRT fit of real data, `course_lib.baselines.mirt.fit_mirt`);
    ``missing [learners, items]`` bool (True = no answer, e.g. ``torch.isnan(real)``): one simulated
    learner per row, θ ~ N(0, I), answers drawn from σ(a θ + d) and removed where ``missing``. The
    result is a population on which that fitted model is *exactly* right, so its Bayes-optimal
    predictor (`SyntheticIRT.posterior_predictive`) is the ceiling for data shaped like the real
    one (same items, same missingness). Seeded by ``seed``. Derived in chapter 05, section 8.
    """
    a = torch.as_tensor(a, dtype=torch.float32)
    a = a[:, None] if a.dim() == 1 else a
    d = torch.as_tensor(d, dtype=torch.float32)
    missing = torch.as_tensor(missing).bool()
    if d.shape != (a.shape[0],) or missing.dim() != 2 or missing.shape[1] != a.shape[0]:
        raise ValueError(f"need a [items, dims], d [items] and missing [learners, items]; got "
                         f"{tuple(a.shape)}, {tuple(d.shape)}, {tuple(missing.shape)}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(missing.shape[0], a.shape[1], generator=g)
    prob = torch.sigmoid(theta @ a.T + d)
    responses = (torch.rand(prob.shape, generator=g) < prob).float()
    responses[missing] = float("nan")
    responses = validate_responses(responses, name="simulated responses")
    return SyntheticIRT(responses=responses, theta=theta, a=a, d=d, prob=prob, correlation=0.0, seed=seed)
