"""Reptile (Nichol, Achiam & Schulman 2018), vectorised over tasks with torch.func.

Derived in chapter 04 (Reptile and first-order meta-learning). For each task i of a batch, run
``steps`` plain SGD steps from θ on the task's data to get φᵢ, then move θ towards the adapted
parameters:

    φᵢ = SGD_steps(θ; 𝒟ᵢ, α),        θ ← θ + β · (1/T) Σᵢ (φᵢ − θ).

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

from course_lib.algorithms.functional import (LossFn, Params, batch_args, fit_loop, get_loss, maybe_compile,
                                                split_params)
from course_lib.algorithms.maml import Adapter, check_alpha, check_steps, inner_adapt, inner_rates
from course_lib.tasks import TaskBatch

__all__ = ["Reptile", "reptile_direction"]


def reptile_direction(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
                      alpha: float | Params, steps: int, adapt: list[str] | None = None) -> Params:
    """θ − (1/T) Σᵢ φᵢ: the Reptile "gradient" of a batch (support ∪ query used as task data).

    Derived in chapter 04, section 1. φᵢ comes from ``steps`` SGD steps of size α, vmapped.
    Shapes: batch x_support ``[tasks, k_shot, *features]``; every entry of the result has its
    parameter's shape (zero for parameters outside ``adapt``).
    """
    fast, _ = split_params(theta, adapt)
    return reptile_direction_tensors(model, theta, inner_rates(alpha, fast), *batch_args(batch),
                                     loss_fn=loss_fn, steps=steps, adapt=adapt)


def reptile_direction_tensors(model: nn.Module, theta: Params, rates: Params, xs: Tensor, ys: Tensor,
                              ms: Tensor, xq: Tensor, yq: Tensor, mq: Tensor, *, loss_fn: LossFn,
                              steps: int, adapt: list[str] | None) -> Params:
    """`reptile_direction` on raw tensors (α as `inner_rates`): what the fit loop (optionally) compiles."""
    x, y, m = torch.cat([xs, xq], 1), torch.cat([ys, yq], 1), torch.cat([ms, mq], 1)
    theta = {name: v.detach() for name, v in theta.items()}

    def one(x_: Tensor, y_: Tensor, m_: Tensor) -> Params:
        return inner_adapt(model, theta, x_, y_, m_, loss_fn=loss_fn, alpha=rates, steps=steps,
                           first_order=True, adapt=adapt)

    with torch.no_grad():
        phi = vmap(one, randomness="different")(x, y, m)
    return {name: theta[name] - phi[name].mean(0) if name in rates else torch.zeros_like(theta[name])
            for name in theta}


class Reptile(Adapter):
    """Reptile around any ``nn.Module``: the same surface as `MAML` (adapt, predict, fit).

    ``alpha``: inner SGD step; ``steps``: inner SGD steps per task; ``beta``: outer step (default
    optimiser: SGD with lr β, i.e. θ ← θ + β(φ̄ − θ)). State: θ is ``model``'s parameters (read
    afresh on every use; ``fit`` trains ``model`` in place) and α one 0-dim tensor per adapted
    parameter. Derived in chapter 04.
    """

    def __init__(self, model: nn.Module, loss: str | LossFn = "mse", alpha: float = 0.01,
                 steps: int = 5, beta: float = 0.1, adapt: list[str] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.loss_fn = get_loss(loss)
        self.steps = check_steps(steps, minimum=1)
        self.beta = check_alpha(beta, "beta (the outer step size)")
        self.adapt_prefixes = adapt
        fast, _ = split_params(self.theta, adapt)  # validates the prefixes
        self.alpha: Params = {name: r.detach() for name, r in inner_rates(check_alpha(alpha), fast).items()}
        self._step_fns: dict[bool, Callable] = {}

    @property
    def theta(self) -> dict[str, nn.Parameter]:
        """θ: the model's parameters by name (what ``fit`` updates in place)."""
        return dict(self.model.named_parameters())

    def parameters(self) -> list[nn.Parameter]:
        """θ: what the outer optimiser updates."""
        return list(self.theta.values())

    def _rates(self) -> Params:
        """α on θ's device (the model may have moved since construction)."""
        return {name: a.to(self.theta[name].device) for name, a in self.alpha.items()}

    def direction(self, batch: TaskBatch) -> Params:
        """θ − φ̄ on ``batch`` (see `reptile_direction`)."""
        return reptile_direction(self.model, self.theta, batch, loss_fn=self.loss_fn, alpha=self._rates(),
                                 steps=self.steps, adapt=self.adapt_prefixes)

    def _step_fn(self, compile: bool) -> Callable:
        """(θ, α, tensors of a batch) -> (θ − φ̄, query loss of θ), optionally torch.compile'd."""
        model, loss_fn, steps, adapt = self.model, self.loss_fn, self.steps, self.adapt_prefixes

        def fn(theta: Params, rates: Params, xs, ys, ms, xq, yq, mq) -> tuple[Params, Tensor]:
            pred = vmap(lambda x_: functional_call(model, theta, (x_,)))(xq)
            losses = vmap(loss_fn)(pred, yq)
            loss = (losses * mq).sum() / mq.sum()
            return reptile_direction_tensors(model, theta, rates, xs, ys, ms, xq, yq, mq, loss_fn=loss_fn,
                                             steps=steps, adapt=adapt), loss

        return maybe_compile(fn, compile)

    def step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer, compile: bool = False) -> Tensor:
        """One outer update; returns the mean query loss of θ before the update (for monitoring)."""
        if compile not in self._step_fns:
            self._step_fns = {compile: self._step_fn(compile)}
        theta = self.theta
        with torch.no_grad():
            direction, loss = self._step_fns[compile]({name: v.detach() for name, v in theta.items()},
                                                      self._rates(), *batch_args(batch))
        for name, d in direction.items():
            theta[name].grad = d
        optimizer.step()
        return loss

    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int,
            beta: float | None = None, seed: int = 0, compile: bool = False, progress: bool = True,
            log_every: int = 100, optimizer: torch.optim.Optimizer | None = None,
            anneal: bool = False) -> dict[str, list]:
        """Meta-train for ``iterations`` outer steps (SGD with lr β unless an optimiser is given).

        ``anneal=True`` decays the outer step linearly from β to 0 over the run, as Nichol et al.
        (2018) do in all their experiments (their ``meta_step_final = 0``): the step at iteration t
        (counted from 0) is β·(1 − t/iterations). Returns the history ``{"iteration", "loss"}``
        (the query loss of θ before each update). Derived in chapter 04, section 4.
        """
        lr = self.beta if beta is None else check_alpha(beta, "beta (the outer step size)")
        opt = optimizer or torch.optim.SGD(self.parameters(), lr=lr)
        if not anneal:
            return fit_loop(lambda b: self.step(b, opt, compile), sample, iterations, seed, progress,
                            desc="Reptile", log_every=log_every)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / iterations)

        def annealed_step(batch: TaskBatch) -> Tensor:
            loss = self.step(batch, opt, compile)
            schedule.step()
            return loss

        return fit_loop(annealed_step, sample, iterations, seed, progress, desc="Reptile (annealed β)",
                        log_every=log_every)
