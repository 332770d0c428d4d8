"""Synthetic learners with public item metadata and hidden item properties (the chapter 01 population).

Derived in chapter 01, section 1; card: ``datasets/synthetic_learners_ch01.md``. Because every true
parameter is known, the Bayes-optimal prediction of a new learner's answers from K of them (the
posterior predictive, `bayes_predictive`) is computable: the ceiling no method can beat.

Unlike ``course_lib.data.synthetic.sample_2pl`` (chapter 05), whose items have no public metadata,
these items carry a skill and a calibrated difficulty that a model may use as features, plus a
word-problem load and an offset that only answers reveal. `bayes_predictive` agrees with
``SyntheticIRT.posterior_predictive`` wherever both apply (tests/test_personalization.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["SyntheticLearners", "make_learners", "bayes_predictive"]

SKILL_NAMES = ("algebra", "reading")


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

    def summary(self) -> dict:
        """What identifies these learners: checksum of the answers, parameter names, prior, size, missing rate."""
        from course_lib.data.responses import responses_checksum

        return {"checksum": responses_checksum(self.responses), "param_names": list(self.param_names),
                "prior_mean": self.prior_mean.tolist(), "prior_cov": self.prior_cov.tolist(),
                "n_items": self.n_items, "missing_rate": float(torch.isnan(self.responses).float().mean())}

    def posterior_predictive(self, x_support: Tensor, y_support: Tensor, x_query: Tensor,
                             support_mask: Tensor | None = None, **quadrature) -> Tensor:
        """The Bayes ceiling for these learners: `bayes_predictive` with the true parameters.

        Shapes: ``x_support, y_support [learners, k_shot]``, ``x_query [learners, n_query]`` ->
        ``[learners, n_query]``; ``quadrature``: ``grid_points``, ``radius``, ``chunk``.
        Derived in chapter 01, section 3.
        """
        return bayes_predictive(self.true_design, self.true_offset, self.prior_mean, self.prior_cov,
                                x_support, y_support, x_query, support_mask, **quadrature)


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
    names = tuple(f"ability_{SKILL_NAMES[s] if s < len(SKILL_NAMES) else s}" for s in range(n_skills))
    return SyntheticLearners(skill=skill, difficulty=difficulty, loading=loading, offset=offset,
                             public_features=public, true_design=design, true_offset=offset - difficulty,
                             prior_mean=prior_mean, prior_cov=prior_cov, learner_params=z, prob=prob,
                             responses=answers, param_names=names + ("word_problem_affinity",))



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


