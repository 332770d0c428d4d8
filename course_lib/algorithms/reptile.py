"""Reptile (Nichol, Achiam & Schulman 2018), vectorised over tasks with torch.func.

Derived in chapter 04 (Reptile and first-order meta-learning). For each task i of a batch, run
``steps`` plain SGD steps from θ on the task's data to get φᵢ, then move θ towards the adapted
parameters:

    φᵢ = SGDᵏ(θ; 𝒟ᵢ, α),        θ ← θ + β · (1/T) Σᵢ (φᵢ − θ).

No second derivatives and no support/query split are needed: each task's support and query
examples are used together in the inner loop. (θ − φ̄) is handed to the outer optimiser as a
"gradient", so plain SGD with learning rate β is exactly the update above and Adam is the common
variant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from course_lib.algorithms.functional import (LossFn, Params, batch_args, check_support, fit_loop,
                                                get_loss, maybe_compile, split_params)
from course_lib.algorithms.maml import inner_adapt
from course_lib.tasks import TaskBatch

__all__ = ["Reptile", "reptile_direction"]


def reptile_direction(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
                      alpha: float, steps: int, adapt: list[str] | None = None) -> Params:
    """θ − (1/T) Σᵢ φᵢ: the Reptile "gradient" of a batch (support ∪ query used as task data).

    Derived in chapter 04, section 1. φᵢ comes from ``steps`` SGD steps of size α, vmapped.
    """
    return _direction(model, theta, *batch_args(batch), loss_fn=loss_fn, alpha=alpha, steps=steps,
                      adapt=adapt)


def _direction(model: nn.Module, theta: Params, xs: Tensor, ys: Tensor, ms: Tensor, xq: Tensor,
               yq: Tensor, mq: Tensor, *, loss_fn: LossFn, alpha: float, steps: int,
               adapt: list[str] | None) -> Params:
    """`reptile_direction` on raw tensors: the function the fit loop (optionally) compiles."""
    x, y, m = torch.cat([xs, xq], 1), torch.cat([ys, yq], 1), torch.cat([ms, mq], 1)
    theta = {k: v.detach() for k, v in theta.items()}

    def one(x_: Tensor, y_: Tensor, m_: Tensor) -> Params:
        return inner_adapt(model, theta, x_, y_, m_, loss_fn=loss_fn, alpha=alpha, steps=steps,
                           first_order=True, adapt=adapt)

    with torch.no_grad():
        phi = vmap(one, randomness="different")(x, y, m)
    fast, _ = split_params(theta, adapt)
    return {k: theta[k] - phi[k].mean(0) if k in fast else torch.zeros_like(theta[k]) for k in theta}


class Reptile:
    """Reptile around any ``nn.Module``: the same surface as `MAML` (adapt, predict, fit).

    ``alpha``: inner SGD step; ``steps``: inner steps k; ``beta``: outer step (default optimiser:
    SGD with lr β, i.e. θ ← θ + β(φ̄ − θ)). Derived in chapter 04.
    """

    def __init__(self, model: nn.Module, loss: str | LossFn = "mse", alpha: float = 0.01,
                 steps: int = 5, beta: float = 0.1, adapt: list[str] | None = None) -> None:
        if steps < 1:
            raise ValueError(f"Reptile needs steps >= 1 inner steps, got {steps}")
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
        self.model = model
        self.loss_fn = get_loss(loss)
        self.alpha, self.steps, self.beta = float(alpha), steps, float(beta)
        self.adapt_prefixes = adapt
        self.theta: dict[str, nn.Parameter] = dict(model.named_parameters())
        split_params(self.theta, adapt)  # validates the prefixes
        self._compiled: tuple[bool, Callable] | None = None

    def parameters(self) -> list[nn.Parameter]:
        """θ: what the outer optimiser updates."""
        return list(self.theta.values())

    def direction(self, batch: TaskBatch) -> Params:
        """θ − φ̄ on ``batch`` (see `reptile_direction`)."""
        return reptile_direction(self.model, dict(self.theta), batch, loss_fn=self.loss_fn,
                                 alpha=self.alpha, steps=self.steps, adapt=self.adapt_prefixes)

    def _step_fn(self, compile: bool) -> Callable:
        """(θ, tensors of a batch) -> (θ − φ̄, query loss of θ), optionally torch.compile'd."""
        model, loss_fn, alpha, steps, adapt = (self.model, self.loss_fn, self.alpha, self.steps,
                                               self.adapt_prefixes)

        def fn(theta: Params, xs, ys, ms, xq, yq, mq) -> tuple[Params, Tensor]:
            pred = vmap(lambda x_: functional_call(model, theta, (x_,)))(xq)
            losses = vmap(loss_fn)(pred, yq)
            loss = (losses * mq).sum() / mq.sum()
            return _direction(model, theta, xs, ys, ms, xq, yq, mq, loss_fn=loss_fn, alpha=alpha,
                              steps=steps, adapt=adapt), loss

        return maybe_compile(fn, compile)

    def step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer, compile: bool = False) -> Tensor:
        """One outer update; returns the mean query loss of θ before the update (for monitoring)."""
        if self._compiled is None or self._compiled[0] != compile:
            self._compiled = (compile, self._step_fn(compile))
        theta = {k: v.detach() for k, v in self.theta.items()}
        with torch.no_grad():
            direction, loss = self._compiled[1](theta, *batch_args(batch))
        for k, d in direction.items():
            self.theta[k].grad = d
        optimizer.step()
        return loss

    def adapt(self, x_support: Tensor, y_support: Tensor, steps: int | None = None,
              mask: Tensor | None = None) -> Params:
        """Adapt to ONE new task with ``steps`` SGD steps (default: the training k); returns φ."""
        check_support(x_support, y_support)
        theta = {k: v.detach() for k, v in self.theta.items()}
        phi = inner_adapt(self.model, theta, x_support, y_support, mask, loss_fn=self.loss_fn,
                          alpha=self.alpha, steps=self.steps if steps is None else steps,
                          first_order=True, adapt=self.adapt_prefixes)
        return {k: v.detach() for k, v in phi.items()}

    def adapt_batch(self, batch: TaskBatch, steps: int | None = None) -> Params:
        """Adapt to every task's support set at once; φ has a leading task dimension."""
        theta = {k: v.detach() for k, v in self.theta.items()}
        xs, ys, ms, *_ = batch_args(batch)
        steps = self.steps if steps is None else steps

        def one(xs_: Tensor, ys_: Tensor, ms_: Tensor) -> Params:
            return inner_adapt(self.model, theta, xs_, ys_, ms_, loss_fn=self.loss_fn, alpha=self.alpha,
                               steps=steps, first_order=True, adapt=self.adapt_prefixes)

        return {k: v.detach() for k, v in vmap(one, randomness="different")(xs, ys, ms).items()}

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        """f(x; φ) for one task."""
        return functional_call(self.model, phi, (x,))

    def predict_batch(self, phi: Params, x: Tensor) -> Tensor:
        """f(xᵢ; φᵢ) for every task: φ and x carry a leading task dimension."""
        return vmap(lambda p, x_: functional_call(self.model, p, (x_,)))(phi, x)

    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int,
            beta: float | None = None, seed: int = 0, compile: bool = False, progress: bool = True,
            log_every: int = 100, optimizer: torch.optim.Optimizer | None = None) -> dict:
        """Meta-train for ``iterations`` outer steps (SGD with lr β unless an optimiser is given)."""
        opt = optimizer or torch.optim.SGD(self.parameters(), lr=self.beta if beta is None else beta)
        return fit_loop(lambda b: self.step(b, opt, compile), sample, iterations, seed, progress, desc="Reptile",
                        log_every=log_every)
