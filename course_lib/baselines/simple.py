"""Cold-start baselines that need no meta-learning: item mean, per-learner logistic, pretrain-then-fine-tune.

Derived in chapter 05, section 3. Each predicts a *new* learner's answers on query items from
their K support answers (``items / answers / mask [learners, K]``) and returns P(correct)
``[learners, n_query]``:

* `ItemMean` ignores the learner: the item's share correct among the training learners;
* `PerLearnerLogistic` is the "no transfer" extreme: a logistic regression fitted from scratch on
  the learner's own K answers only (features: an intercept, plus one indicator per item group
  such as a test section), with an L2 penalty (a N(0, 1/λ) prior on the weights);
* `PretrainFinetune` is transfer learning: one model (the `MetaIRT` network) trained on the
  pooled answers of all training learners, then fine-tuned on the K answers by a few SGD steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.data.responses import validate_responses

__all__ = ["ItemMean", "PerLearnerLogistic", "PretrainFinetune"]


class ItemMean:
    """P(correct on j) = (correct_j + prior) / (answered_j + 2·prior) over the training learners.

    ``train [learners, items]`` with NaN missing. Derived in chapter 05, section 3.
    """

    def __init__(self, train: Tensor, prior: float = 1.0) -> None:
        r = validate_responses(train, name="train")
        answered = ~torch.isnan(r)
        self.p = (r.nan_to_num(0).sum(0) + prior) / (answered.sum(0) + 2 * prior)

    def predict(self, items: Tensor, answers: Tensor, mask: Tensor | None, query_items: Tensor) -> Tensor:
        """``[learners, n_query]``: the item means (the support answers are ignored)."""
        return self.p[torch.as_tensor(query_items).long()]


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


class PretrainFinetune:
    """Transfer learning: pretrain a `MetaIRT` network on pooled answers, fine-tune on K answers.

    Pretraining minimises the binary cross-entropy of *all* training answers with one shared
    ability (the network cannot tell learners apart), full batch with Adam. Fine-tuning runs
    ``steps`` SGD steps of size ``alpha`` on the K support answers over every parameter (what a
    practitioner would do; only the ability affects the unseen items). Derived in chapter 05, section 3.
    """

    def __init__(self, n_items: int, dims: int = 1, seed: int = 0) -> None:
        from course_lib.learner_models import MetaIRT

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
