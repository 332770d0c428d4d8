"""Transfer learning, the baseline meta-learning is compared with: pretrain on pooled answers, fine-tune on K.

Derived in chapter 05, section 3 (and chapter 01's "fine-tune" arm): the pretraining objective
min_θ Σᵢ Lᵢ(θ) does not know that fine-tuning will follow, which is the difference from MAML.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.data.responses import validate_responses

__all__ = ["PretrainFinetune"]


class PretrainFinetune:
    """Transfer learning: pretrain a `MetaIRT` network on pooled answers, fine-tune on K answers.

    Pretraining minimises the binary cross-entropy of *all* training answers with one shared
    ability (the network cannot tell learners apart), full batch with Adam. Fine-tuning runs
    ``steps`` SGD steps of size ``alpha`` on the K support answers over every parameter (what a
    practitioner would do; only the ability affects the unseen items). Derived in chapter 05, section 3.
    """

    def __init__(self, n_items: int, dims: int = 1, seed: int = 0) -> None:
        from course_lib.models.meta_irt import MetaIRT

        self.model = MetaIRT(n_items, dims, seed=seed)

    def pretrain(self, train: Tensor, epochs: int = 200, lr: float = 0.05) -> list[float]:
        """Fit the network to the pooled training answers; returns the loss per epoch."""
        r = validate_responses(train, name="train")
        # With one shared ability the pooled loss depends on the data only through the counts of
        # correct and wrong answers per item: Σⱼ n1ⱼ softplus(−zⱼ) + n0ⱼ softplus(zⱼ).
        n1 = (r == 1).sum(0).float()
        n0 = (r == 0).sum(0).float()
        items = torch.arange(r.shape[1])
        opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        history = []
        for _ in range(epochs):
            opt.zero_grad()
            z = self.model(items)
            loss = (n1 * F.softplus(-z) + n0 * F.softplus(z)).sum() / (n1 + n0).sum()
            loss.backward()
            opt.step()
            history.append(loss.item())
        return history

    def predict(self, items: Tensor, answers: Tensor, mask: Tensor | None, query_items: Tensor, *,
                alpha: float = 0.1, steps: int = 5) -> Tensor:
        """Fine-tune a copy of the pretrained network on each learner's K answers; ``[learners, n_query]``."""
        from course_lib.algorithms import MAML
        from course_lib.tasks import TaskBatch

        tuner = MAML(self.model, loss="bce", alpha=alpha, steps=steps, adapt=None)
        items = torch.as_tensor(items).long()
        query_items = torch.as_tensor(query_items).long()
        batch = TaskBatch(items, answers.float(), query_items, torch.zeros(query_items.shape),
                          support_mask=mask)
        phi = tuner.adapt_batch(batch)
        return torch.sigmoid(tuner.predict_batch(phi, query_items))
