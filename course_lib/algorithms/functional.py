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


def _mse(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).pow(2).reshape(pred.shape[0], -1).mean(1)


def _cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target.long(), reduction="none")


def _bce(logits: Tensor, target: Tensor) -> Tensor:
    logits = logits.reshape(target.shape)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")


LOSSES: dict[str, LossFn] = {"mse": _mse, "cross_entropy": _cross_entropy, "bce": _bce}


def get_loss(loss: str | LossFn) -> LossFn:
    """Resolve a loss name (``"mse" | "cross_entropy" | "bce"``) or pass a callable through.

    A loss maps ``(pred [n, ...], target [n, ...])`` to per-example losses ``[n]``.
    """
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable "
                         "(pred, target) -> per-example losses [n]")
    return LOSSES[loss]


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values [n]`` over the entries where ``mask [n]`` is True (all if mask is None)."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def task_loss(model: nn.Module, params: Params, loss_fn: LossFn, x: Tensor, y: Tensor,
              mask: Tensor | None = None) -> Tensor:
    """Mean loss of one task: L(params; x, y) with padded examples masked out. x ``[n, ...]``."""
    return masked_mean(loss_fn(functional_call(model, params, (x,)), y), mask)


def split_params(theta: Params, adapt: list[str] | None) -> tuple[Params, Params]:
    """Split θ into the parameters adapted in the inner loop and the ones only meta-learned.

    ``adapt`` lists name prefixes (e.g. ``["head."]``); None means every parameter adapts.
    """
    if adapt is None:
        return dict(theta), {}
    fast = {k: v for k, v in theta.items() if any(k.startswith(p) for p in adapt)}
    if not fast:
        raise ValueError(f"adapt={adapt} matches no parameter; the model has {sorted(theta)}")
    return fast, {k: v for k, v in theta.items() if k not in fast}


def batch_args(batch: TaskBatch) -> tuple[Tensor, ...]:
    """The six tensors a vmapped task function takes; absent masks become all-True masks."""
    sm = batch.support_mask
    qm = batch.query_mask
    if sm is None:
        sm = torch.ones(batch.x_support.shape[:2], dtype=torch.bool, device=batch.x_support.device)
    if qm is None:
        qm = torch.ones(batch.x_query.shape[:2], dtype=torch.bool, device=batch.x_query.device)
    return batch.x_support, batch.y_support, sm, batch.x_query, batch.y_query, qm


def check_support(x: Tensor, y: Tensor) -> None:
    """Validate one task's support set (no task dimension)."""
    if x.shape[0] == 0:
        raise ValueError("the support set is empty: give at least one (x, y) pair to adapt on")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"support x has {x.shape[0]} examples but y has {y.shape[0]}")
    for name, t in (("x", x), ("y", y)):
        if t.is_floating_point() and torch.isnan(t).any():
            raise ValueError(f"support {name} contains NaN; drop missing answers before adapting")


def maybe_compile(fn: Callable, compile: bool) -> Callable:
    """``torch.compile(fn)`` if asked, falling back to eager ``fn`` (with a warning) if compilation fails.

    Compilation needs a working C++ compiler on the CPU (and Triton on a GPU); a laptop without one
    still runs every chapter, only slower.
    """
    if not compile:
        return fn
    compiled = torch.compile(fn, dynamic=False)
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
    """Adam with the fused kernel where torch has one for the device (3x less overhead per step)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def fit_loop(step: Callable[[TaskBatch], Tensor], sample: Callable[[torch.Generator], TaskBatch],
             iterations: int, seed: int, progress: bool, desc: str, log_every: int = 100) -> dict:
    """Run ``iterations`` meta-updates, each on ``sample(generator)``; return the loss history.

    The loss is read back from the device only every ``log_every`` iterations (a sync per step
    would dominate on a GPU); the history holds the mean over each window.
    """
    from tqdm.auto import tqdm

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    g = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"iteration": [], "loss": []}
    window: list[Tensor] = []
    bar = tqdm(range(1, iterations + 1), desc=desc, disable=not progress, mininterval=0.5)
    for it in bar:
        window.append(step(sample(g)).detach())
        if it % log_every == 0 or it == iterations:
            loss = torch.stack(window).mean().item()
            window.clear()
            history["iteration"].append(it)
            history["loss"].append(loss)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    return history
