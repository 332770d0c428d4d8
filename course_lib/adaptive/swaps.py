"""Which part of a tester wins: its questions or its predictions? Swap one component at a time.

Chapter 07, section 4c. A CAT tester is a selection rule plus a learner model that predicts. When
two testers differ after n questions, `SwappedTester` plays one tester's questions with the other's
predictions, and `swap_table` scores every combination against a reference tester on the same
learners with a paired learner-bootstrap CI (`course_lib.metrics.paired_auc_difference`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.adaptive.cat import CATModel, CATSplit, IRTModel, run_cat
from course_lib.metrics import auc, paired_auc_difference

__all__ = ["SwappedTester", "swap_table"]


class SwappedTester:
    """Asks ``asker``'s questions (ranked by its ``information`` or ``policy_scores``) and predicts with
    ``predictor``; both see every answer. Chapter 07, section 4c."""

    def __init__(self, asker: CATModel, predictor: CATModel) -> None:
        self.asker, self.predictor = asker, predictor
        self.name = f"{asker.name} questions, {predictor.name} predictions"

    def begin(self, n_learners: int) -> dict:
        return {"ask": self.asker.begin(n_learners), "pred": self.predictor.begin(n_learners)}

    def observe(self, state: dict, item: Tensor, answer: Tensor) -> dict:
        return {"ask": self.asker.observe(state["ask"], item, answer),
                "pred": self.predictor.observe(state["pred"], item, answer)}

    def predict(self, state: dict) -> Tensor:
        return self.predictor.predict(state["pred"])

    def information(self, state: dict) -> Tensor:
        return self.asker.information(state["ask"])

    def policy_scores(self, state: dict) -> Tensor:
        return self.asker.policy_scores(state["ask"])


def swap_table(testers: dict[str, tuple[CATModel, str]], reference: str, responses: Tensor, split: CATSplit,
               scorer: IRTModel, groups: Tensor, n_steps: int = 3, n_boot: int = 200, seed: int = 0) -> list[dict]:
    """Play every ``testers[name] = (model, rule)`` for ``n_steps`` and score it against ``testers[reference]``.

    Rows: tester, n_items, auc, diff / diff_lo / diff_hi (minus the reference, paired CI) and
    ``first_question_section_share``: the share of learners whose first question is in each item
    group (``groups [items]``, e.g. test sections). Chapter 07, section 4c.
    """
    if reference not in testers:
        raise ValueError(f"reference {reference!r} must be one of the testers {list(testers)}")
    hold = split.heldout
    y, learner = responses[hold].numpy(), torch.nonzero(hold)[:, 0].numpy()
    played = {k: run_cat(m, responses, split, rule, n_steps, seed=seed, scorer=scorer, method=k)
              for k, (m, rule) in testers.items()}
    ref = played[reference]
    out = []
    for k, tr in played.items():
        first = torch.bincount(groups[tr.asked[:, 0]], minlength=int(groups.max()) + 1).float() / len(tr.asked)
        for n in range(n_steps):
            p = tr.heldout_prob[n][hold].numpy()
            d = paired_auc_difference(y, p, ref.heldout_prob[n][hold].numpy(), learner, n_boot=n_boot, seed=seed + n)
            out.append({"tester": k, "n_items": n + 1, "auc": auc(y, p),
                        "first_question_section_share": first.tolist(), **d})
    return out
