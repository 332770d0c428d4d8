"""The item-mean baseline: predict each item's share correct, ignoring the new learner's answers.

Derived in chapter 05, section 3. The floor every cold-start model must beat.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.data.responses import validate_responses

__all__ = ["ItemMean"]


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
