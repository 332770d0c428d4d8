"""Meta-learned MIRT whose inner loop is the exact posterior over the ability (no gradient steps).

Derived in chapter 05, section 8. MAML adapts the ability φ by a few gradient steps on the K
support answers, an approximation of the MAP ability. When the ability has only D = 2-3
dimensions the *exact* inner loop is cheap: the posterior over θ on a Gauss-Hermite grid
(chapter 05, section 3), and the posterior predictive on the query items:

    p(θ_q | 𝒟ˢ) ∝ w_q Π_{j∈𝒟ˢ} σ(±(aⱼ · θ_q + dⱼ)),     θ_q = μ + L z_q,
    P(yⱼ = 1 | 𝒟ˢ) = Σ_q p(θ_q | 𝒟ˢ) σ(aⱼ · θ_q + dⱼ).

The meta-parameters are the item loadings a, intercepts d, and the population prior N(μ, LLᵀ)
of the ability; the outer loop minimises the query log loss *after* conditioning on K answers,
averaged over meta-batches of training learners and K drawn from a range (the MAML objective with
the inner loop replaced by Bayes' rule, as in amortised Bayesian meta-learning). Started from the
marginal-likelihood MIRT fit (`course_lib.baselines.mirt.fit_mirt`), it differs from that
baseline only where fitting the *few-shot predictive* disagrees with fitting the full-response
likelihood; how far it moves is chosen by early stopping on validation learners.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.tasks import TaskBatch, learner_tasks

__all__ = ["PosteriorMetaIRT", "PosteriorMetaConfig", "train_posterior_meta_irt"]


class PosteriorMetaIRT(nn.Module):
    """MIRT with a learned ability prior; ``forward(batch)`` = posterior predictive on the query items.

    Parameters: ``item_a [items, D]``, ``item_d [items]``, ``prior_mean [D]``, ``prior_chol [D, D]``
    (lower-triangular part used). ``points`` Gauss-Hermite nodes per dimension. Derived in chapter 05, section 8.
    """

    def __init__(self, a: Tensor, d: Tensor, points: int | None = None) -> None:
        from course_lib.baselines.mirt import mirt_grid

        super().__init__()
        a = torch.as_tensor(a, dtype=torch.float32)
        if a.dim() != 2 or torch.as_tensor(d).shape != (a.shape[0],):
            raise ValueError(f"a must be [items, D] and d [items], got {tuple(a.shape)} and "
                             f"{tuple(torch.as_tensor(d).shape)}")
        dims = a.shape[1]
        self.item_a = nn.Parameter(a.clone())
        self.item_d = nn.Parameter(torch.as_tensor(d, dtype=torch.float32).clone())
        self.prior_mean = nn.Parameter(torch.zeros(dims))
        self.prior_chol = nn.Parameter(torch.eye(dims))
        z, log_w = mirt_grid(dims, points)
        self.register_buffer("z", z.float())
        self.register_buffer("log_w", log_w.float())

    def node_logits(self) -> Tensor:
        """logit P(correct) of every item at every grid node: ``[items, Q]``."""
        theta = self.prior_mean + self.z @ torch.tril(self.prior_chol).T          # [Q, D]
        return self.item_a @ theta.T + self.item_d[:, None]

    def posterior(self, batch: TaskBatch, logits: Tensor) -> Tensor:
        """Posterior weights of each task's ability on the grid given its support answers: ``[tasks, Q]``."""
        m = torch.ones_like(batch.y_support) if batch.support_mask is None else batch.support_mask.float()
        y = batch.y_support.nan_to_num(0.0) * m
        n_items = logits.shape[0]
        correct = torch.zeros(batch.n_tasks, n_items, device=y.device).scatter_add(1, batch.x_support, y)
        wrong = torch.zeros_like(correct).scatter_add(1, batch.x_support, m - y)
        ll = correct @ F.logsigmoid(logits) + wrong @ F.logsigmoid(-logits)
        return torch.softmax(ll + self.log_w, 1)

    def forward(self, batch: TaskBatch) -> Tensor:
        """P(correct) on ``batch.x_query [tasks, n]`` given the support answers (posterior predictive)."""
        logits = self.node_logits()
        pred = self.posterior(batch, logits) @ torch.sigmoid(logits).T             # [tasks, items]
        return pred.gather(1, batch.x_query).clamp(1e-6, 1 - 1e-6)


@dataclass(frozen=True)
class PosteriorMetaConfig:
    """Outer loop of `train_posterior_meta_irt`: Adam step ``beta`` (β), ``meta_batch`` learners per
    step, ``max_query`` query answers each, at most ``iterations`` steps, validation every ``eval_every``."""

    beta: float = 0.01
    meta_batch: int = 256
    max_query: int = 40
    iterations: int = 400
    eval_every: int = 25

    def __post_init__(self) -> None:
        bad = [k for k, v in self.__dict__.items() if not v > 0]
        if bad:
            raise ValueError(f"PosteriorMetaConfig settings must be > 0; fix {bad}")


def _query_log_loss(model: PosteriorMetaIRT, batch: TaskBatch) -> Tensor:
    p = model(batch)
    mask = torch.ones_like(p) if batch.query_mask is None else batch.query_mask.float()
    return (F.binary_cross_entropy(p, batch.y_query, reduction="none") * mask).sum() / mask.sum()


def train_posterior_meta_irt(responses: Tensor, learners: Tensor, k_range: tuple[int, int], init: tuple[Tensor, Tensor],
                             config: PosteriorMetaConfig = PosteriorMetaConfig(), *,
                             val_tasks: list[TaskBatch] | None = None, seed: int = 0,
                             progress: bool = False) -> tuple[PosteriorMetaIRT, dict]:
    """Meta-train `PosteriorMetaIRT` from item parameters ``init = (a, d)`` on the training ``learners``.

    Each step draws ``meta_batch`` learners and one K from ``k_range`` (inclusive), conditions on K
    random answers and takes an Adam step on the query log loss. With ``val_tasks`` (batches of
    validation learners) the returned model is the one with the lowest mean validation log loss
    among the checkpoints every ``eval_every`` steps, *including step 0* (the initial fit), so it
    never does worse on validation than its starting point. Returns ``(model, history)``.
    Derived in chapter 05, section 8.
    """
    k_min, k_max = k_range
    if not 1 <= k_min <= k_max:
        raise ValueError(f"k_range must be (k_min, k_max) with 1 <= k_min <= k_max, got {k_range}")
    model = PosteriorMetaIRT(*init)
    usable = learners[(~torch.isnan(responses[learners])).sum(1) > k_max]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.beta)

    def val_loss() -> float:
        with torch.no_grad():
            return float(sum(_query_log_loss(model, b) for b in val_tasks) / len(val_tasks))

    history = {"iteration": [], "val_loss": []}
    best = (val_loss(), 0, copy.deepcopy(model.state_dict())) if val_tasks else None
    steps = range(1, config.iterations + 1)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="posterior meta-IRT")
    for it in steps:
        k_shot = int(torch.randint(k_min, k_max + 1, (1,), generator=g))
        ix = usable[torch.randint(len(usable), (config.meta_batch,), generator=g)]
        batch = learner_tasks(responses, k_shot, ix, generator=g, max_query=config.max_query)
        opt.zero_grad()
        _query_log_loss(model, batch).backward()
        opt.step()
        if val_tasks and it % config.eval_every == 0:
            loss = val_loss()
            history["iteration"].append(it)
            history["val_loss"].append(loss)
            if loss < best[0]:
                best = (loss, it, copy.deepcopy(model.state_dict()))
    if best is not None:
        model.load_state_dict(best[2])
        history["best_iteration"] = best[1]
    return model, history
