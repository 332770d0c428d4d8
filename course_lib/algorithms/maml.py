"""MAML (second and first order) and Meta-SGD, vectorised over tasks with torch.func.

Derived in chapter 03 (MAML from first principles). For a batch of tasks i with support 𝒟ᵢˢ and
query 𝒟ᵢ^q, the inner loop adapts the meta-parameters θ by ``steps`` gradient steps

    φᵢ⁽⁰⁾ = θ,    φᵢ⁽ˢ⁺¹⁾ = φᵢ⁽ˢ⁾ − α ⊙ ∇_φ L(φᵢ⁽ˢ⁾; 𝒟ᵢˢ),

and the outer loop minimises the query loss after adaptation

    ℒ(θ) = (1/T) Σᵢ L(φᵢ(θ); 𝒟ᵢ^q),      θ ← θ − β ∇_θ ℒ(θ).

∇_θ ℒ contains the Hessian-vector term (I − α ∇²L) of the inner step; first-order MAML drops it
by treating the inner gradient as a constant. Meta-SGD (Li et al. 2017) learns a per-parameter
inner rate α alongside θ. Inside this module α is always one tensor per adapted parameter
(`inner_rates`): a fixed rate is a 0-dim tensor, Meta-SGD's a learnable tensor shaped like its
parameter. Every task is handled by one `vmap` over a per-task function built from
`functional_call` and `grad`, so there is no clone-and-loop over tasks.

The functions here are pure: ``phi = inner_adapt(model, theta, x, y, ...)`` reads θ from a
parameter dictionary and returns φ as another; ``model`` only supplies the architecture. The
`MAML` class adds the one piece of state, the meta-parameters: θ is the wrapped model's own
parameters (read afresh on every use), so ``fit`` trains that model in place, as a torch
optimiser would, and nothing else is stored or shared.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from course_lib.algorithms.functional import (LossFn, Params, adam, batch_args, check_support,
                                                fit_loop, get_loss, maybe_compile, split_params,
                                                task_loss)
from course_lib.tasks import TaskBatch

__all__ = ["MAML", "Adapter", "check_alpha", "check_steps", "inner_rates", "inner_adapt", "adapt_batch", "predict_batch",
           "maml_loss", "maml_loss_tensors"]


def check_alpha(alpha: float, name: str = "alpha (the inner step size)") -> float:
    """A step size as a float, or a ValueError if it is not a finite positive number (the boundary check)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def check_steps(steps: int, minimum: int = 0) -> int:
    """The number of inner steps as an int, or a ValueError if it is not an integer >= ``minimum``."""
    try:
        value = operator.index(steps)
    except TypeError:
        value = None
    if isinstance(steps, bool) or value is None or value < minimum:
        raise ValueError(f"steps (inner gradient steps) must be an integer >= {minimum}, got {steps!r}")
    return value


def inner_rates(alpha: float | Params, fast: Params) -> Params:
    """α as one tensor per adapted parameter: the single form the inner loop works with.

    A number becomes a 0-dim tensor per parameter; a dictionary (Meta-SGD's learned rates, each
    shaped like its parameter or broadcastable to it) must cover every adapted parameter.
    ``fast`` maps parameter names to tensors. The wrappers (`MAML`, `Reptile`) require α > 0 with
    `check_alpha`; here any finite number is taken, so a negative α (gradient *ascent*) can be
    written down when a check needs it. Derived in chapter 03, section 2.
    """
    if isinstance(alpha, dict):
        missing = sorted(set(fast) - set(alpha))
        if missing:
            raise ValueError(f"alpha has no rate for the adapted parameters {missing}; give one per "
                             "parameter (or a single number)")
        return {name: alpha[name] for name in fast}
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha):
        raise ValueError(f"alpha (the inner step size) must be a finite number or a dict of per-parameter "
                         f"tensors, got {alpha!r}")
    rate = float(alpha)
    return {name: torch.tensor(rate, dtype=v.dtype, device=v.device) for name, v in fast.items()}


def inner_adapt(model: nn.Module, theta: Params, x: Tensor, y: Tensor, mask: Tensor | None, *,
                loss_fn: LossFn, alpha: float | Params, steps: int, first_order: bool = False,
                adapt: list[str] | None = None) -> Params:
    """φ = θ after ``steps`` gradient steps on one task's support set (no task dimension).

    ``alpha``: a number, or per-parameter rates (Meta-SGD), see `inner_rates`. With
    ``first_order`` the inner gradients are detached (FOMAML). ``adapt`` lists the parameter-name
    prefixes that adapt (None = all). Derived in chapter 03, section 2. Shapes: x
    ``[k_shot, *features]``, y ``[k_shot, *targets]``, mask ``[k_shot]`` bool or None.
    """
    fast, slow = split_params(theta, adapt)
    rates = inner_rates(alpha, fast)

    def support_loss(fast_params: Params) -> Tensor:
        return task_loss(model, {**slow, **fast_params}, loss_fn, x, y, mask)

    for _ in range(steps):
        g = grad(support_loss)(fast)
        if first_order:
            g = {name: v.detach() for name, v in g.items()}
        fast = {name: fast[name] - rates[name] * g[name] for name in fast}
    return {**slow, **fast}


def adapt_batch(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
                alpha: float | Params, steps: int, adapt: list[str] | None = None) -> Params:
    """φᵢ for every task of ``batch`` from its support set (first order, detached): a pure function.

    Returns φ with a leading task dimension: each entry ``[tasks, *parameter shape]``. Shapes of
    the batch: x_support ``[tasks, k_shot, *features]``. Derived in chapter 03, section 4.
    """
    steps = check_steps(steps, minimum=0)
    theta = {name: v.detach() for name, v in theta.items()}
    fast, _ = split_params(theta, adapt)
    rates = {name: r.detach() for name, r in inner_rates(alpha, fast).items()}
    xs, ys, ms, *_ = batch_args(batch)

    def one(xs_: Tensor, ys_: Tensor, ms_: Tensor) -> Params:
        return inner_adapt(model, theta, xs_, ys_, ms_, loss_fn=loss_fn, alpha=rates, steps=steps,
                           first_order=True, adapt=adapt)

    phi = vmap(one, randomness="different")(xs, ys, ms)
    return {name: v.detach() for name, v in phi.items()}


def predict_batch(model: nn.Module, phi: Params, x: Tensor) -> Tensor:
    """f(xᵢ; φᵢ) for every task: φ entries ``[tasks, ...]``, x ``[tasks, n, *features]`` (chapter 03)."""
    return vmap(lambda p, x_: functional_call(model, p, (x_,)))(phi, x)


def maml_loss(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
              alpha: float | Params, steps: int, first_order: bool = False,
              adapt: list[str] | None = None) -> Tensor:
    """The MAML meta-objective ℒ(θ): mean over tasks of the query loss after adaptation.

    Vectorised over the task dimension with ``vmap``; differentiable w.r.t. θ (and α when it is
    a dictionary of tensors that require grad). Derived in chapter 03, section 3.
    """
    fast, _ = split_params(theta, adapt)
    return maml_loss_tensors(model, theta, inner_rates(alpha, fast), *batch_args(batch), loss_fn=loss_fn,
                             steps=steps, first_order=first_order, adapt=adapt)


def maml_loss_tensors(model: nn.Module, theta: Params, rates: Params, xs: Tensor, ys: Tensor, ms: Tensor | None,
                      xq: Tensor, yq: Tensor, mq: Tensor | None, *, loss_fn: LossFn, steps: int,
                      first_order: bool, adapt: list[str] | None) -> Tensor:
    """`maml_loss` on raw tensors (masks included, α as `inner_rates`): what the fit loop differentiates.

    ``ms``/``mq`` None: every example of every task counts (no mask arithmetic in the graph, chapter 08).
    """

    def one_task(theta_: Params, rates_: Params, xs: Tensor, ys: Tensor, ms: Tensor | None, xq: Tensor,
                 yq: Tensor, mq: Tensor | None) -> Tensor:
        phi = inner_adapt(model, theta_, xs, ys, ms, loss_fn=loss_fn, alpha=rates_, steps=steps,
                          first_order=first_order, adapt=adapt)
        return task_loss(model, phi, loss_fn, xq, yq, mq)

    masks = tuple(None if m is None else 0 for m in (ms, mq))
    per_task = vmap(one_task, in_dims=(None, None, 0, 0, masks[0], 0, 0, masks[1]), randomness="different")(
        theta, rates, xs, ys, ms, xq, yq, mq)
    return per_task.mean()


class Adapter:
    """What every optimisation-based meta-learner does with a new task: adapt θ to φ, then predict.

    Shared by `MAML` and `course_lib.algorithms.reptile.Reptile`; a subclass provides ``model``,
    ``theta``, ``loss_fn``, ``steps``, ``adapt_prefixes`` and ``_rates()`` (α per parameter).
    Derived in chapter 03, section 5 (adapting a new learner is the inner loop alone).
    """

    def adapt(self, x_support: Tensor, y_support: Tensor, steps: int | None = None,
              mask: Tensor | None = None) -> Params:
        """Adapt to ONE new task (e.g. a new learner) from its support set; returns φ (detached).

        Shapes: x ``[k_shot, *features]``, y ``[k_shot, *targets]`` (no task dimension).
        """
        check_support(x_support, y_support)
        theta = {name: v.detach() for name, v in self.theta.items()}
        try:
            phi = inner_adapt(self.model, theta, x_support, y_support, mask, loss_fn=self.loss_fn,
                              alpha=self._rates(), steps=self.steps if steps is None else check_steps(steps),
                              first_order=True, adapt=self.adapt_prefixes)
        except RuntimeError as err:  # a shape the model cannot take: say which input, not torch's matmul
            raise ValueError(f"the model cannot take this support set (x_support {tuple(x_support.shape)}, "
                             f"y_support {tuple(y_support.shape)}): {err}. Check the number of features "
                             "against the model's input layer and that y has the model's output shape") from None
        return {name: v.detach() for name, v in phi.items()}

    def adapt_batch(self, batch: TaskBatch, steps: int | None = None) -> Params:
        """Adapt to every task's support set at once; φ has a leading task dimension (see `adapt_batch`)."""
        return adapt_batch(self.model, self.theta, batch, loss_fn=self.loss_fn, alpha=self._rates(),
                           steps=self.steps if steps is None else steps, adapt=self.adapt_prefixes)

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        """f(x; φ) for one task: x ``[n, *features]``."""
        return functional_call(self.model, phi, (x,))

    def predict_batch(self, phi: Params, x: Tensor) -> Tensor:
        """f(xᵢ; φᵢ) for every task: φ and x carry a leading task dimension."""
        return predict_batch(self.model, phi, x)


class MAML(Adapter):
    """Model-Agnostic Meta-Learning around any ``nn.Module`` (Finn et al. 2017).

    ``loss``: "mse" | "cross_entropy" | "bce" | callable(pred, target) -> per-example losses.
    ``alpha``: the inner step (a number > 0); ``steps``: inner steps. ``adapt``: parameter-name
    prefixes adapted in the inner loop (None = all), e.g. the decision layers of a recommender or a
    learner's ability in an IRT model; the rest is meta-learned only. ``meta_sgd``: learn a
    per-parameter inner rate α (initialised at ``alpha``).

    State: θ is ``model``'s parameters (`theta` reads them afresh), so ``fit`` trains ``model`` in
    place; α is ``self.alpha``, one tensor per adapted parameter (learnable with ``meta_sgd``).
    Everything else goes through the pure functions of this module.
    Derived in chapter 03 (Meta-SGD is discussed in its pitfalls and used in chapter 05).
    """

    def __init__(self, model: nn.Module, loss: str | LossFn = "mse", alpha: float = 0.01,
                 steps: int = 1, first_order: bool = False, meta_sgd: bool = False,
                 adapt: list[str] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        steps = check_steps(steps, minimum=0)
        rate = check_alpha(alpha)
        self.model = model
        self.loss_fn = get_loss(loss)
        self.steps = steps
        self.first_order = first_order
        self.meta_sgd = meta_sgd
        self.adapt_prefixes = adapt
        fast, _ = split_params(self.theta, adapt)
        self.alpha: Params = {name: nn.Parameter(torch.full_like(v.detach(), rate)) if meta_sgd
                              else torch.tensor(rate, dtype=v.dtype, device=v.device)
                              for name, v in fast.items()}
        self._grad_fns: dict[bool, Callable] = {}

    @property
    def theta(self) -> dict[str, nn.Parameter]:
        """θ: the model's parameters by name (what ``fit`` updates in place)."""
        return dict(self.model.named_parameters())

    @property
    def alphas(self) -> dict[str, nn.Parameter] | None:
        """Meta-SGD's learned rates α (the same tensors as ``self.alpha``); None for fixed α."""
        return self.alpha if self.meta_sgd else None

    def parameters(self) -> list[nn.Parameter]:
        """θ (and the learned rates α for Meta-SGD): what the outer optimiser updates."""
        return list(self.theta.values()) + (list(self.alpha.values()) if self.meta_sgd else [])

    def _rates(self) -> Params:
        """α moved to θ's device (the model may have moved since construction), detached."""
        return {name: a.detach().to(self.theta[name].device) for name, a in self.alpha.items()}

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """ℒ(θ) on a batch of tasks (differentiable w.r.t. θ and, for Meta-SGD, α)."""
        return maml_loss(self.model, self.theta, batch, loss_fn=self.loss_fn, alpha=dict(self.alpha),
                         steps=self.steps, first_order=self.first_order, adapt=self.adapt_prefixes)

    # ------------------------------------------------------------------ training
    def _grad_fn(self, compile: bool) -> Callable:
        """(θ, α, tensors of a batch) -> (meta-gradients, loss), optionally torch.compile'd."""
        model, loss_fn, steps, fo, adapt = (self.model, self.loss_fn, self.steps, self.first_order,
                                            self.adapt_prefixes)

        def loss_of(theta: Params, rates: Params, xs, ys, ms, xq, yq, mq) -> Tensor:
            return maml_loss_tensors(model, theta, rates, xs, ys, ms, xq, yq, mq, loss_fn=loss_fn,
                                     steps=steps, first_order=fo, adapt=adapt)

        fn = torch.func.grad_and_value(loss_of, argnums=(0, 1) if self.meta_sgd else 0)
        return maybe_compile(fn, compile)

    def step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer, compile: bool = False) -> Tensor:
        """One meta-update θ ← Adam(θ, ∇_θ ℒ(θ)) on ``batch``; returns the (detached) meta-loss."""
        if compile not in self._grad_fns:
            self._grad_fns = {compile: self._grad_fn(compile)}
        theta = self.theta
        grads, loss = self._grad_fns[compile]({name: v.detach() for name, v in theta.items()},
                                              self._rates(), *batch_args(batch))
        if self.meta_sgd:
            grads, rate_grads = grads
            for name, a in self.alpha.items():
                a.grad = rate_grads[name]
        for name, p in theta.items():
            p.grad = grads[name]
        optimizer.step()
        return loss

    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int, beta: float = 1e-3,
            seed: int = 0, compile: bool = False, progress: bool = True, log_every: int = 100,
            optimizer: torch.optim.Optimizer | None = None) -> dict[str, list]:
        """Meta-train for ``iterations`` steps with Adam (outer step β) on batches from ``sample``.

        ``sample(generator) -> TaskBatch`` draws a fresh meta-batch. Returns the loss history
        ``{"iteration", "loss"}`` (see `course_lib.algorithms.functional.fit_loop`).
        """
        if not beta > 0:
            raise ValueError(f"beta (the outer step size) must be > 0, got {beta}")
        opt = optimizer or adam(self.parameters(), beta)
        name = "Meta-SGD" if self.meta_sgd else ("FOMAML" if self.first_order else "MAML")
        return fit_loop(lambda b: self.step(b, opt, compile), sample, iterations, seed, progress,
                        desc=name, log_every=log_every)
