"""The no-transfer baseline: a logistic regression per learner, fitted from scratch on their K answers.

Derived in chapter 05, section 3: features are an intercept plus one indicator per item group
(e.g. a test section), with an L2 penalty (a N(0, 1/λ) prior on the weights).
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.data.responses import validate_responses

__all__ = ["PerLearnerLogistic"]


class PerLearnerLogistic:
    """Per-learner L2-regularised logistic regression trained from scratch on the K answers.

    ``features [items, f]`` describe items (default: a single intercept column, i.e. the learner's
    smoothed share correct). Fitted by Newton's method for every learner at once; ``l2`` is λ.
    Derived in chapter 05, section 3.
    """

    def __init__(self, features: Tensor | None = None, n_items: int | None = None, l2: float = 1.0,
                 iterations: int = 10) -> None:
        if features is None:
            if n_items is None:
                raise ValueError("give item features [items, f] or n_items (for intercept-only)")
            features = torch.ones(n_items, 1)
        self.features = torch.as_tensor(features, dtype=torch.float64)
        if self.features.dim() != 2:
            raise ValueError(f"features must be [items, f], got {tuple(self.features.shape)}")
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0 (K can be 1: without a penalty the fit diverges), got {l2}")
        self.l2, self.iterations = l2, iterations

    @staticmethod
    def group_features(groups) -> Tensor:
        """One indicator column per distinct group label (e.g. test section): ``[items, groups]``."""
        labels = sorted(set(groups))
        return torch.tensor([[float(g == lab) for lab in labels] for g in groups])

    def fit_weights(self, items: Tensor, answers: Tensor, mask: Tensor | None) -> Tensor:
        """Newton iterations on Σ_k m_k BCE + (λ/2)‖w‖²: weights ``[learners, f]``."""
        items = torch.as_tensor(items).long()
        mask = torch.ones_like(items, dtype=torch.bool) if mask is None else mask
        X = self.features[items]                                        # [L, K, f]
        y = answers.double()
        m = mask.double()
        f = X.shape[-1]
        w = torch.zeros(X.shape[0], f, dtype=torch.float64)
        eye = torch.eye(f, dtype=torch.float64)
        for _ in range(self.iterations):
            p = torch.sigmoid(torch.einsum("lkf,lf->lk", X, w))
            g = torch.einsum("lkf,lk->lf", X, m * (p - y)) + self.l2 * w
            H = torch.einsum("lkf,lk,lkg->lfg", X, m * p * (1 - p), X) + self.l2 * eye
            w = w - torch.linalg.solve(H, g)
        return w

    def predict(self, items: Tensor, answers: Tensor, mask: Tensor | None, query_items: Tensor) -> Tensor:
        """``[learners, n_query]`` from each learner's own K answers only."""
        w = self.fit_weights(items, answers, mask)
        Xq = self.features[torch.as_tensor(query_items).long()]
        return torch.sigmoid(torch.einsum("lnf,lf->ln", Xq, w)).float()
