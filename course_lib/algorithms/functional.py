"""Shared pieces of the optimisation-based meta-learners: losses, masked task losses, the fit loop.

Derived in chapter 03 (MAML from first principles), section 2: a model is a function
f(x; θ) that `torch.func.functional_call` evaluates with any parameter dictionary, so the
adapted parameters φᵢ are just another dictionary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from course_lib.tasks import TaskBatch

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


__all__ = ["Params", "LossFn", "LOSSES", "mse", "cross_entropy", "bce", "get_loss", "masked_mean",
           "task_loss", "split_params", "batch_args", "check_support", "maybe_compile", "adam", "fit_loop"]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-example squared error: pred, target ``[n, *targets]`` -> ``[n]`` (mean over targets).

    The sinusoid regression loss of chapter 03, section 1.
    """
    return (pred - target).pow(2).reshape(pred.shape[0], -1).mean(1)


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example cross-entropy: logits ``[n, n_way]``, integer labels ``[n]`` -> ``[n]`` (chapter 02)."""
    return F.cross_entropy(logits, target.long(), reduction="none")


def bce(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example binary cross-entropy on logits: ``[n]`` (or ``[n, 1]``), 0/1 targets ``[n]`` -> ``[n]``.

    The log-loss of a right/wrong answer, chapter 01, section 2.
    """
    logits = logits.reshape(target.shape)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")


LOSSES: dict[str, LossFn] = {"mse": mse, "cross_entropy": cross_entropy, "bce": bce}


def get_loss(loss: str | LossFn) -> LossFn:
    """Resolve a loss name (``"mse" | "cross_entropy" | "bce"``) or pass a callable through.

    A loss maps ``(pred [n, ...], target [n, ...])`` to per-example losses ``[n]``. Chapter 03, section 2.
    """
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable "
                         "(pred, target) -> per-example losses [n]")
    return LOSSES[loss]


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values [n]`` over the entries where ``mask [n]`` is True (all if None); chapter 01, section 2."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def task_loss(model: nn.Module, params: Params, loss_fn: LossFn, x: Tensor, y: Tensor,
              mask: Tensor | None = None) -> Tensor:
    """Mean loss of one task: L(params; x, y) with padded examples masked out (chapter 03, section 2).

    x ``[n, *features]``, y ``[n, *targets]``, mask ``[n]`` bool or None -> a scalar.
    """
    return masked_mean(loss_fn(functional_call(model, params, (x,)), y), mask)


def split_params(theta: Params, adapt: list[str] | None) -> tuple[Params, Params]:
    """Split θ into the parameters adapted in the inner loop and the ones only meta-learned.

    ``adapt`` lists name prefixes (e.g. ``["head."]``); None means every parameter adapts.
    Returns ``(fast, slow)``. Chapter 03 (pitfalls: adapting only a head) and chapter 05.
    """
    if adapt is None:
        return dict(theta), {}
    fast = {name: v for name, v in theta.items() if any(name.startswith(p) for p in adapt)}
    if not fast:
        raise ValueError(f"adapt={adapt} matches no parameter; the model has {sorted(theta)}")
    return fast, {name: v for name, v in theta.items() if name not in fast}


def batch_args(batch: TaskBatch) -> tuple[Tensor, ...]:
    """The six tensors a vmapped task function takes; absent masks become all-True masks.

    Returns ``(x_support, y_support, support_mask [tasks, k_shot], x_query, y_query,
    query_mask [tasks, n_query])``. Chapter 03, section 3.
    """
    if not isinstance(batch, TaskBatch):
        raise ValueError(f"expected a course_lib.tasks.TaskBatch, got {type(batch).__name__}; build one with "
                         "TaskBatch(x_support, y_support, x_query, y_query) or a sampler in course_lib.tasks")
    sm = batch.support_mask
    qm = batch.query_mask
    if sm is None:
        sm = torch.ones(batch.x_support.shape[:2], dtype=torch.bool, device=batch.x_support.device)
    if qm is None:
        qm = torch.ones(batch.x_query.shape[:2], dtype=torch.bool, device=batch.x_query.device)
    return batch.x_support, batch.y_support, sm, batch.x_query, batch.y_query, qm


def check_support(x: Tensor, y: Tensor) -> None:
    """Validate one task's support set: x ``[k_shot, *features]``, y ``[k_shot, *targets]`` (chapter 03)."""
    if x.shape[0] == 0:
        raise ValueError("the support set is empty: give at least one (x, y) pair to adapt on")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"support x has {x.shape[0]} examples but y has {y.shape[0]}")
    for name, t in (("x", x), ("y", y)):
        if t.is_floating_point() and torch.isnan(t).any():
            raise ValueError(f"support {name} contains NaN; drop missing answers before adapting")
        if t.is_floating_point() and torch.isinf(t).any():
            raise ValueError(f"support {name} contains an infinite value; rescale or drop it before adapting")


def maybe_compile(fn: Callable, compile: bool, options: dict | None = None) -> Callable:
    """``torch.compile(fn)`` if asked, falling back to eager ``fn`` (with a warning) if compilation fails.

    ``options``: inductor options passed to ``torch.compile`` (e.g. ``{"cpp_wrapper": True}``, chapter 08).

    Compilation needs a working C++ compiler on the CPU (and Triton on a GPU); a laptop without one
    still runs every chapter, only slower. Chapter 03, section 7 (the cost of second order).
    """
    if not compile:
        return fn
    compiled = torch.compile(fn, dynamic=False, options=options)
    state = {"fn": compiled}

    def call(*args, **kwargs):
        try:
            return state["fn"](*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any backend failure means: run eagerly
            if state["fn"] is fn:
                raise
            import warnings

            warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); running eagerly",
                          RuntimeWarning, stacklevel=2)
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call


def adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where torch has one for the device (3x less overhead per step; chapter 03)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def fit_loop(step: Callable[[TaskBatch], Tensor], sample: Callable[[torch.Generator], TaskBatch],
             iterations: int, seed: int, progress: bool, desc: str, log_every: int = 100,
             metrics: tuple[str, ...] = ("loss",)) -> dict[str, list]:
    """Run ``iterations`` meta-updates, each ``step(sample(generator))``; return the metric history.

    ``step`` performs one update and returns what it monitors: a scalar (the loss) or, with
    several ``metrics`` (e.g. ``("loss", "accuracy")``), a tensor ``[len(metrics)]``. The
    generator is a CPU ``torch.Generator`` seeded with ``seed``, so a run is repeatable. Values are
    read back from the device only every ``log_every`` iterations (a sync per step would dominate
    on a GPU); the history ``{"iteration", *metrics}`` holds the mean over each window.
    The meta-training loop of chapters 02-04 (and of every study built on them).
    """
    from tqdm.auto import tqdm

    if not callable(sample):
        raise ValueError(f"sample must be a function generator -> TaskBatch, got {type(sample).__name__}; "
                         "e.g. lambda g: sample_sinusoid_tasks(25, 10, generator=g)[0]")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    g = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"iteration": [], **{name: [] for name in metrics}}
    window: list[Tensor] = []
    bar = tqdm(range(1, iterations + 1), desc=desc, disable=not progress, mininterval=0.5)
    for it in bar:
        window.append(step(sample(g)).detach())
        if it % log_every == 0 or it == iterations:
            means = torch.stack(window).mean(0).reshape(len(metrics)).tolist()
            window.clear()
            history["iteration"].append(it)
            for name, value in zip(metrics, means):
                history[name].append(value)
            bar.set_postfix({name: f"{value:.4f}" for name, value in zip(metrics, means)}, refresh=False)
    return history
