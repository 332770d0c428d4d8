"""Transfer learning, the baseline meta-learning is compared with: pretrain on pooled answers, fine-tune on K.

Derived in chapter 01, section 3 (the "pretrain + fine-tune" and "from scratch" arms) and used in
chapter 05, section 3 (`PretrainFinetune`). The pretraining objective min_θ Σᵢ Lᵢ(θ) does not know
that fine-tuning will follow, which is the difference from MAML. Fine-tuning is MAML's own inner
loop (``course_lib.algorithms.inner_adapt``): at test time fine-tuning and MAML run the very same
code, only the starting θ differs.

* `item_counts`, `pretrain`: fit θ to the pooled answers of past learners (one home for both chapters);
* `adapt_path`, `predict_tasks`, `fine_tune_predict`: gradient steps from θ on every task's support
  set, and the predictions;
* `tune_fine_tuning`, `fine_tune_per_k`: pick (α, steps) on validation learners, for every K
  (chapter 01's "fine_tune" and "scratch" arms);
* `objective_slice`: the pretraining and the meta objective along the line θ_pre → θ_MAML;
* `PretrainFinetune`: the whole recipe on chapter 05's `MetaIRT`.
"""

from __future__ import annotations

import math

import numpy as np

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from course_lib.algorithms import inner_adapt
from course_lib.algorithms.functional import Params, get_loss, task_loss
from course_lib.data.responses import validate_responses
from course_lib.metrics import query_log_loss
from course_lib.tasks import TaskBatch

__all__ = ["item_counts", "pretrain", "adapt_path", "predict_tasks", "fine_tune_predict", "tune_fine_tuning",
           "fine_tune_per_k", "objective_slice", "PretrainFinetune"]


def item_counts(responses: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Correct and incorrect answers per item, pooled over the learners ``rows`` (default all): two ``[items]``.

    A model that ignores who answered (the global model) depends on the pooled answers only
    through these counts. Missing answers count as neither. Derived in chapter 01, section 3.
    """
    sub = responses if rows is None else responses[rows.long()]
    return (sub == 1).sum(0).float(), (sub == 0).sum(0).float()


def _fit_counts(model: nn.Module, n1: Tensor, n0: Tensor, *, steps: int, lr: float,
                progress: bool) -> list[float]:
    """Full-batch Adam on Σⱼ n1ⱼ softplus(−zⱼ) + n0ⱼ softplus(zⱼ) / Σ(n1 + n0); the loss of every step.

    This is the mean binary cross-entropy of every pooled answer, computed from the counts.
    """
    from tqdm.auto import tqdm

    items = torch.arange(len(n1), device=n1.device)
    total = (n1 + n0).sum()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc="pretrain (pooled answers)", disable=not progress, mininterval=0.5):
        opt.zero_grad()
        logits = model(items)
        loss = (n1 * F.softplus(-logits) + n0 * F.softplus(logits)).sum() / total
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def pretrain(model: nn.Module, responses: Tensor, rows: Tensor, *, steps: int = 300, lr: float = 0.05,
             progress: bool = True) -> dict:
    """Transfer learning's first stage: fit θ to the pooled answers of past learners.

    Minimises Σᵢ Lᵢ(θ), the mean binary cross-entropy over every answer of every learner in
    ``rows`` (computed from the per-item counts of `item_counts`, which gives the same number),
    with full-batch Adam; ``model`` maps item indices ``[items]`` to logits. Returns the loss
    history every 25 steps ``{"step": [...], "loss": [...]}``. Derived in chapter 01, section 3.
    """
    if len(rows) == 0:
        raise ValueError("pretrain needs at least one learner in rows")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = next(model.parameters()).device
    n1, n0 = (t.to(device) for t in item_counts(responses, rows))
    losses = _fit_counts(model, n1, n0, steps=steps, lr=lr, progress=progress)
    kept = [s for s in range(1, steps + 1) if s % 25 == 0 or s == steps]
    return {"step": kept, "loss": [losses[s - 1] for s in kept]}


def adapt_path(model: nn.Module, theta: Params, batch: TaskBatch, *, alpha: float,
               checkpoints: list[int], adapt: list[str] | None = None) -> dict[int, Params]:
    """Gradient steps of size α from θ on every task's support set; φ after each checkpoint.

    The same inner loop as MAML (``course_lib.algorithms.inner_adapt``), vmapped over tasks, one
    step at a time so that all step counts of a grid cost one run; checkpoint 0 is θ itself (no
    adaptation). ``adapt``: parameter-name prefixes that move (None = all). Returns ``{steps: φ}``
    with a leading task dimension. Derived in chapter 01, section 3.
    """
    if not checkpoints or min(checkpoints) < 0:
        raise ValueError(f"checkpoints must be non-negative step counts, got {checkpoints}")
    loss_fn = get_loss("bce")
    phi = {name: v.detach().expand(batch.n_tasks, *v.shape).clone() for name, v in theta.items()}
    out = {0: phi} if 0 in checkpoints else {}
    mask = batch.support_mask

    def one_step(phi_i, x, y, m):
        return inner_adapt(model, phi_i, x, y, m, loss_fn=loss_fn, alpha=alpha, steps=1, adapt=adapt)

    if mask is None:
        mask = torch.ones(batch.x_support.shape[:2], dtype=torch.bool, device=batch.x_support.device)
    step = vmap(one_step)
    with torch.no_grad():
        for s in range(1, max(checkpoints) + 1):
            phi = step(phi, batch.x_support, batch.y_support, mask)
            if s in checkpoints:
                out[s] = phi
    return out


def predict_tasks(model: nn.Module, phi: Params, x: Tensor) -> Tensor:
    """σ(f(xᵢ; φᵢ)) for every task (φ with a leading task dimension): ``x [tasks, n]`` -> ``[tasks, n]``."""
    with torch.no_grad():
        return torch.sigmoid(vmap(lambda p, x_: functional_call(model, p, (x_,)))(phi, x))


def tune_fine_tuning(model: nn.Module, theta: Params, batch: TaskBatch, *, alpha_grid: tuple[float, ...],
                     steps_grid: tuple[int, ...], adapt: list[str] | None = None) -> tuple[float, int, float]:
    """(α, steps) from the grids with the lowest mean query log-loss on ``batch`` (validation learners).

    Returns ``(alpha, steps, validation_log_loss)``; ties go to the first in grid order (smaller
    α, then fewer steps). Derived in chapter 01, section 3.
    """
    if not alpha_grid or min(alpha_grid) <= 0 or not steps_grid or min(steps_grid) < 1:
        raise ValueError(f"alpha_grid needs step sizes > 0 and steps_grid step counts >= 1; got "
                         f"{alpha_grid} and {steps_grid}")
    best = (math.inf, None, None)
    for alpha in alpha_grid:
        path = adapt_path(model, theta, batch, alpha=alpha, checkpoints=list(steps_grid), adapt=adapt)
        for steps, phi in sorted(path.items()):
            loss = query_log_loss(predict_tasks(model, phi, batch.x_query), batch.y_query, batch.query_mask)
            if loss < best[0] - 1e-9:
                best = (loss, alpha, steps)
    return best[1], best[2], best[0]


def fine_tune_predict(model: nn.Module, theta: Params, batch: TaskBatch, *, alpha: float, steps: int,
                      adapt: list[str] | None = None) -> Tensor:
    """``steps`` gradient steps of size α from θ on each task's support set, then P(query): ``[tasks, n_query]``."""
    phi = adapt_path(model, theta, batch, alpha=alpha, checkpoints=[steps], adapt=adapt)[steps]
    return predict_tasks(model, phi, batch.x_query)


def fine_tune_per_k(model: nn.Module, theta: Params, val_tasks: dict[int, TaskBatch],
                    test_tasks: dict[int, TaskBatch], *, alpha_grid: tuple[float, ...], steps_grid: tuple[int, ...],
                    adapt: list[str] | None = None, progress: bool = True,
                    desc: str = "fine-tune") -> tuple[dict[int, Tensor], dict[int, dict]]:
    """For each K: tune (α, steps) on the validation learners, then fine-tune θ on every test learner's K answers.

    ``val_tasks``, ``test_tasks``: ``{K: TaskBatch}`` (e.g. from ``course_lib.tasks.fixed_query_tasks``).
    Returns ``({K: P(query) [learners, n_query]}, {K: {"alpha", "steps", "validation_log_loss"}})``.
    From θ_pre this is transfer learning; from θ = 0 it is a model per learner trained from scratch.
    Derived in chapter 01, section 3.
    """
    from tqdm.auto import tqdm

    preds, hyper = {}, {}
    for k_shot in tqdm(list(test_tasks), desc=f"{desc}: tune (α, steps) per K", disable=not progress):
        alpha, steps, val_loss = tune_fine_tuning(model, theta, val_tasks[k_shot], alpha_grid=alpha_grid,
                                                  steps_grid=steps_grid, adapt=adapt)
        preds[k_shot] = fine_tune_predict(model, theta, test_tasks[k_shot], alpha=alpha, steps=steps, adapt=adapt)
        hyper[k_shot] = {"alpha": alpha, "steps": steps, "validation_log_loss": val_loss}
    return preds, hyper


def objective_slice(model: nn.Module, theta_pre: Params, theta_maml: Params, batch: TaskBatch, *,
                    alpha: float, steps: int, adapt: list[str] | None = None, n: int = 21) -> dict:
    """Both objectives along θ(t) = θ_pre + t (θ_MAML − θ_pre), t in [−0.5, 1.5]: why transfer ≠ meta-learning.

    pretraining objective: mean loss of θ itself on the learners' answers (support ∪ query), what
    `pretrain` minimises; meta objective: mean query loss after ``steps`` steps of size α on the
    support set (on the ``adapt`` parameters), what MAML minimises. ``batch``: one task per
    learner, ``[learners, k_shot]`` and ``[learners, n_query]``. Returns ``t`` and both curves.
    Derived in chapter 01, section 6.
    """
    loss_fn = get_loss("bce")
    ts = np.linspace(-0.5, 1.5, n)
    x_all = torch.cat([batch.x_support, batch.x_query], 1)
    y_all = torch.cat([batch.y_support, batch.y_query], 1)
    pre, meta = [], []
    for t in ts:
        theta = {name: theta_pre[name] + float(t) * (theta_maml[name] - theta_pre[name]) for name in theta_pre}
        with torch.no_grad():
            pre.append(float(vmap(lambda x, y: task_loss(model, theta, loss_fn, x, y))(x_all, y_all).mean()))
        pred = fine_tune_predict(model, theta, batch, alpha=alpha, steps=steps, adapt=adapt)
        meta.append(query_log_loss(pred, batch.y_query, batch.query_mask))
    return {"k_shot": batch.x_support.shape[1], "alpha": alpha, "steps": steps, "t": ts.tolist(),
            "pretraining_objective": pre, "meta_objective": meta}


class PretrainFinetune:
    """Transfer learning: pretrain a `MetaIRT` network on pooled answers, fine-tune on K answers.

    Pretraining minimises the binary cross-entropy of *all* training answers with one shared
    ability (the network cannot tell learners apart), full batch with Adam (`item_counts` and the
    same loop as `pretrain`). Fine-tuning runs ``steps`` SGD steps of size ``alpha`` on the K
    support answers over every parameter (what a practitioner would do; only the ability affects
    the unseen items), with `adapt_path`. Derived in chapter 05, section 3.
    """

    def __init__(self, n_items: int, dims: int = 1, seed: int = 0) -> None:
        from course_lib.models.meta_irt import MetaIRT

        self.model = MetaIRT(n_items, dims, seed=seed)

    def pretrain(self, train: Tensor, epochs: int = 200, lr: float = 0.05) -> list[float]:
        """Fit the network to the pooled training answers ``[learners, items]``; returns the loss per epoch."""
        n1, n0 = item_counts(validate_responses(train, name="train"))
        return _fit_counts(self.model, n1, n0, steps=epochs, lr=lr, progress=False)

    def predict(self, items: Tensor, answers: Tensor, mask: Tensor | None, query_items: Tensor, *,
                alpha: float = 0.1, steps: int = 5) -> Tensor:
        """Fine-tune a copy of the pretrained network on each learner's K answers; ``[learners, n_query]``.

        Shapes: ``items, answers, mask [learners, k_shot]``, ``query_items [learners, n_query]``.
        """
        if alpha <= 0 or steps < 0:
            raise ValueError(f"alpha must be > 0 and steps >= 0, got {alpha} and {steps}")
        query_items = torch.as_tensor(query_items).long()
        batch = TaskBatch(torch.as_tensor(items).long(), answers.float(), query_items,
                          torch.zeros(query_items.shape), support_mask=mask)
        return fine_tune_predict(self.model, dict(self.model.named_parameters()), batch, alpha=alpha, steps=steps)
