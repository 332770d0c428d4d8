"""A meta-learned preference model over resources described by text: item cold start from features.

Derived in chapter 06 (Personalized learning-resource recommendation), section 10. A resource is
its text feature vector xⱼ (TF-IDF reduced with SVD, :func:`course_lib.data.resource_text.text_features`);
learner i's predicted rating is

    r̂ᵢⱼ = μ + bᵢ + v·xⱼ + wᵢ · (P xⱼ),

where the projection P, the population taste v and μ are meta-learned only (θ), and the learner's
offset bᵢ and taste vector wᵢ are adapted in the inner loop from the meta-learned start
(``adapt=ADAPT_TEXT``), as MeLU adapts only its decision layers. A resource nobody has rated gets
a score from its text alone: nothing in the model is indexed by resource, which is what makes item
cold start possible (the InstEval model of :mod:`course_lib.models.preference` has a lecturer
embedding and cannot score an unseen lecturer).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from course_lib.algorithms import MAML
from course_lib.tasks import TaskBatch

__all__ = ["TextPreference", "ADAPT_TEXT", "text_task_sampler", "support_batch", "adapted_scores", "utility_at"]

#: Parameters adapted per learner: the taste vector and the offset.
ADAPT_TEXT: list[str] = ["w", "bias"]


class TextPreference(nn.Module):
    """r̂ = μ + b + v·x + w·(P x) for text features ``x [..., n_features]``; output ``[...]``."""

    def __init__(self, n_features: int, dim: int = 8, mu: float = 0.0) -> None:
        super().__init__()
        if n_features < 1 or dim < 1:
            raise ValueError(f"need n_features >= 1 and dim >= 1, got {n_features}, {dim}")
        self.project = nn.Linear(n_features, dim, bias=False)
        self.population = nn.Linear(n_features, 1, bias=False)
        nn.init.zeros_(self.population.weight)
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        self.w = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        """Predicted ratings ``[...]`` of the resources with features ``x [..., n_features]``."""
        return self.mu + self.bias + self.population(x).squeeze(-1) + self.project(x) @ self.w


def text_task_sampler(features: np.ndarray, items: np.ndarray, ratings: np.ndarray, meta_batch: int,
                      max_k_shot: int = 10, n_query: int = 10) -> Callable[[torch.Generator], TaskBatch]:
    """``sample(generator) -> TaskBatch`` of training learners: K ~ U{1..max_k_shot} per task.

    ``features [resources, n_features]``; ``items``/``ratings [learners, n_rated]``. Each draw
    shuffles a learner's ratings, the first K form 𝒟ᵢˢ (padded to ``max_k_shot`` with a mask) and
    the next ``n_query`` form 𝒟ᵢ^q. Derived in chapter 06, section 10.
    """
    if items.shape != ratings.shape or items.shape[1] < max_k_shot + n_query:
        raise ValueError(f"need items and ratings of the same shape [learners, >= {max_k_shot + n_query}], "
                         f"got {items.shape} and {ratings.shape}")
    x_all = torch.as_tensor(features, dtype=torch.float32)
    items_t, ratings_t = torch.as_tensor(items), torch.as_tensor(ratings, dtype=torch.float32)

    def sample(g: torch.Generator) -> TaskBatch:
        who = torch.randint(len(items_t), (meta_batch,), generator=g)
        order = torch.argsort(torch.rand(meta_batch, items_t.shape[1], generator=g), 1)
        its = torch.gather(items_t[who], 1, order)
        ys = torch.gather(ratings_t[who], 1, order)
        k_shot = torch.randint(1, max_k_shot + 1, (meta_batch, 1), generator=g)
        mask = torch.arange(max_k_shot)[None, :] < k_shot
        q = slice(max_k_shot, max_k_shot + n_query)
        return TaskBatch(x_all[its[:, :max_k_shot]], ys[:, :max_k_shot], x_all[its[:, q]], ys[:, q], support_mask=mask)

    return sample


def support_batch(features: np.ndarray, items: np.ndarray, ratings: np.ndarray, targets: np.ndarray) -> TaskBatch:
    """Learners' support sets ``items/ratings [learners, k_shot]`` and the resources ``targets`` to score.

    ``targets``: ``[n]`` resources scored for every learner, or ``[learners, n]`` one list each.
    The query ratings are unknown (zeros): the batch is only for adapting and predicting.
    """
    x_all = torch.as_tensor(features, dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(targets))
    x_target = x_all[targets].expand(len(items), -1, -1) if targets.dim() == 1 else x_all[targets]
    return TaskBatch(x_all[torch.as_tensor(items)], torch.as_tensor(ratings, dtype=torch.float32), x_target,
                     torch.zeros(x_target.shape[:2]))


def adapted_scores(learner: MAML, batch: TaskBatch, steps: int) -> np.ndarray:
    """``[learners, targets]`` predictions after ``steps`` inner steps on each support set (0: θ itself)."""
    if steps == 0:
        with torch.no_grad():
            theta = {name: v.detach() for name, v in learner.theta.items()}
            pred = torch.func.functional_call(learner.model, theta, (batch.x_query,))
    else:
        pred = learner.predict_batch(learner.adapt_batch(batch, steps=steps), batch.x_query)
    return pred.detach().cpu().numpy()


def utility_at(scores: np.ndarray, expected: np.ndarray, n: int = 5) -> np.ndarray:
    """Per learner, the mean true expected rating of the ``n`` resources with the highest ``scores``.

    ``scores``/``expected [learners, resources]``. The Bayes-optimal scores maximise its expectation
    given the same information. Ties are broken by resource order. Derived in chapter 06, section 10.
    """
    scores, expected = np.asarray(scores, float), np.asarray(expected, float)
    if scores.shape != expected.shape or scores.ndim != 2:
        raise ValueError(f"scores and expected must both be [learners, resources], got {scores.shape}, "
                         f"{expected.shape}")
    if not 1 <= n <= scores.shape[1]:
        raise ValueError(f"n must be in 1..{scores.shape[1]}, got {n}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(expected, top, 1).mean(1)
