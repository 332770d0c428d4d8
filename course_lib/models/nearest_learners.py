"""The nearest-learner model: predict a new learner from the past learners who answered alike.

Derived in chapter 05, section 5. This is the metric-based alternative to `MetaIRT` (chapter 02's
idea applied to learners): no parameters adapt; a new learner is compared with the past (training)
learners on the items they both answered and their neighbours' answers are the prediction (a
nearest-prototype classifier when the "prototypes" are past learners).
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.data.responses import validate_responses

__all__ = ["NearestLearners"]


class NearestLearners:
    """Predict a new learner's answers from the past learners who answered their K items alike.

    ``past [learners, items]`` (1/0, NaN missing) are the training learners. For a new learner
    with support answers y_S, the distance to past learner m is the mean squared difference on
    the support items m answered; the ``n_neighbors`` nearest (ties broken by index) are averaged with
    weights exp(−distance / ``temperature``), and the prediction for item j is their weighted
    share correct on j, shrunk towards the item's overall share with ``prior_weight``
    pseudo-learners. Derived in chapter 05, section 5 (metric-based meta-learning, chapter 02).
    """

    def __init__(self, past: Tensor, n_neighbors: int = 50, temperature: float = 0.1,
                 prior_weight: float = 1.0) -> None:
        self.past = validate_responses(past, name="past learners")
        if not 1 <= n_neighbors <= self.past.shape[0]:
            raise ValueError(f"n_neighbors must be in 1..{self.past.shape[0]} (the number of past learners), "
                             f"got {n_neighbors}")
        if temperature <= 0 or prior_weight < 0:
            raise ValueError(f"need temperature > 0 and prior_weight >= 0, got {temperature}, {prior_weight}")
        self.n_neighbors, self.temperature, self.prior_weight = n_neighbors, temperature, prior_weight
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

        ``distances`` (from `distances`) can be passed to reuse them across settings of
        n_neighbors / temperature.
        """
        dist = self.distances(items, answers, mask) if distances is None else distances
        top = dist.topk(self.n_neighbors, dim=1, largest=False)
        w = torch.softmax(-top.values / self.temperature, dim=1) * self.n_neighbors    # [L, n_neighbors]
        weights = torch.zeros(dist.shape).scatter_(1, top.indices, w)                 # [L, past], sparse rows
        q = torch.as_tensor(query_items).long()
        num = weights @ self._y                                                        # Σ_m w_m y_mj
        den = weights @ self._m                                                        # Σ_m w_m [m answered j]
        p = (num + self.prior_weight * self._item_mean) / (den + self.prior_weight)
        return p.gather(1, q)
