"""MAML (second and first order) and Meta-SGD, vectorised over tasks with torch.func.

Derived in chapter 03 (MAML from first principles). For a batch of tasks i with support 𝒟ᵢˢ and
query 𝒟ᵢ^q, the inner loop adapts the meta-parameters θ by K-free gradient steps

    φᵢ⁽⁰⁾ = θ,    φᵢ⁽ˢ⁺¹⁾ = φᵢ⁽ˢ⁾ − α ∇_φ L(φᵢ⁽ˢ⁾; 𝒟ᵢˢ),

and the outer loop minimises the query loss after adaptation

    ℒ(θ) = (1/T) Σᵢ L(φᵢ(θ); 𝒟ᵢ^q),      θ ← θ − β ∇_θ ℒ(θ).

∇_θ ℒ contains the Hessian-vector term (I − α ∇²L) of the inner step; first-order MAML drops it
by treating the inner gradient as a constant. Meta-SGD (Li et al. 2017) learns a per-parameter
inner rate α alongside θ. Every task is handled by one `vmap` over a per-task function built from
`functional_call` and `grad`, so there is no clone-and-loop over tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from course_lib.algorithms.functional import (LossFn, Params, adam, batch_args, check_support,
                                                fit_loop, get_loss, maybe_compile, split_params,
                                                task_loss)
from course_lib.tasks import TaskBatch

__all__ = ["MAML", "inner_adapt", "maml_loss"]


def inner_adapt(model: nn.Module, theta: Params, x: Tensor, y: Tensor, mask: Tensor | None, *,
                loss_fn: LossFn, alpha: float | Params, steps: int, first_order: bool = False,
                adapt: list[str] | None = None) -> Params:
    """φ = θ after ``steps`` gradient steps on one task's support set (no task dimension).

    ``alpha`` is a float or, for Meta-SGD, a dict of per-parameter rates shaped like the adapted
    parameters. With ``first_order`` the inner gradients are detached (FOMAML). Derived in chapter
    03, section 2. Shapes: x ``[k_shot, *features]``, y ``[k_shot, *targets]``, mask ``[k_shot]``.
    """
    fast, slow = split_params(theta, adapt)

    def support_loss(fast_params: Params) -> Tensor:
        return task_loss(model, {**slow, **fast_params}, loss_fn, x, y, mask)

    for _ in range(steps):
        g = grad(support_loss)(fast)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        if isinstance(alpha, dict):
            fast = {k: fast[k] - alpha[k] * g[k] for k in fast}
        else:
            fast = {k: fast[k] - alpha * g[k] for k in fast}
    return {**slow, **fast}


def maml_loss(model: nn.Module, theta: Params, batch: TaskBatch, *, loss_fn: LossFn,
              alpha: float | Params, steps: int, first_order: bool = False,
              adapt: list[str] | None = None) -> Tensor:
    """The MAML meta-objective ℒ(θ): mean over tasks of the query loss after adaptation.

    Vectorised over the task dimension with ``vmap``. Derived in chapter 03, section 3.
    """
    return _maml_loss(model, theta, *batch_args(batch), loss_fn=loss_fn, alpha=alpha, steps=steps,
                      first_order=first_order, adapt=adapt)


def _maml_loss(model: nn.Module, theta: Params, xs: Tensor, ys: Tensor, ms: Tensor, xq: Tensor,
               yq: Tensor, mq: Tensor, *, loss_fn: LossFn, alpha: float | Params, steps: int,
               first_order: bool, adapt: list[str] | None) -> Tensor:
    """`maml_loss` on raw tensors (masks included): the function the fit loop differentiates."""

    def one_task(theta_: Params, xs: Tensor, ys: Tensor, ms: Tensor, xq: Tensor, yq: Tensor,
                 mq: Tensor) -> Tensor:
        phi = inner_adapt(model, theta_, xs, ys, ms, loss_fn=loss_fn, alpha=alpha, steps=steps,
                          first_order=first_order, adapt=adapt)
        return task_loss(model, phi, loss_fn, xq, yq, mq)

    per_task = vmap(one_task, in_dims=(None, 0, 0, 0, 0, 0, 0), randomness="different")(
        theta, xs, ys, ms, xq, yq, mq)
    return per_task.mean()


class MAML:
    """Model-Agnostic Meta-Learning around any ``nn.Module`` (Finn et al. 2017).

    ``loss``: "mse" | "cross_entropy" | "bce" | callable(pred, target) -> per-example losses.
    ``adapt``: parameter-name prefixes adapted in the inner loop (None = all), e.g. the decision
    layers of a recommender or a learner's ability in an IRT model; the rest is meta-learned only.
    ``meta_sgd``: learn a per-parameter inner rate α (initialised at ``alpha``).
    Derived in chapter 03 (Meta-SGD is discussed in its pitfalls and used in chapter 05).
    """

    def __init__(self, model: nn.Module, loss: str | LossFn = "mse", alpha: float = 0.01,
                 steps: int = 1, first_order: bool = False, meta_sgd: bool = False,
                 adapt: list[str] | None = None) -> None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if alpha <= 0:
            raise ValueError(f"alpha (the inner step size) must be > 0, got {alpha}")
        self.model = model
        self.loss_fn = get_loss(loss)
        self.alpha = float(alpha)
        self.steps = steps
        self.first_order = first_order
        self.adapt_prefixes = adapt
        self.theta: dict[str, nn.Parameter] = dict(model.named_parameters())
        fast, _ = split_params(self.theta, adapt)
        self.alphas: dict[str, nn.Parameter] | None = (
            {k: nn.Parameter(torch.full_like(v.detach(), alpha)) for k, v in fast.items()}
            if meta_sgd else None)
        self._compiled: Callable | None = None

    # ------------------------------------------------------------------ pure pieces
    def _alpha(self) -> float | Params:
        return self.alpha if self.alphas is None else dict(self.alphas)

    def parameters(self) -> list[nn.Parameter]:
        """θ (and the learned rates α for Meta-SGD): what the outer optimiser updates."""
        return list(self.theta.values()) + (list(self.alphas.values()) if self.alphas else [])

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """ℒ(θ) on a batch of tasks (differentiable w.r.t. θ and α)."""
        return maml_loss(self.model, dict(self.theta), batch, loss_fn=self.loss_fn, alpha=self._alpha(),
                         steps=self.steps, first_order=self.first_order, adapt=self.adapt_prefixes)

    def adapt(self, x_support: Tensor, y_support: Tensor, steps: int | None = None,
              mask: Tensor | None = None) -> Params:
        """Adapt to ONE new task (e.g. a new learner) from its support set; returns φ (detached).

        Shapes: x ``[k_shot, *features]``, y ``[k_shot, *targets]`` (no task dimension).
        """
        check_support(x_support, y_support)
        theta = {k: v.detach() for k, v in self.theta.items()}
        alpha = self._alpha()
        if isinstance(alpha, dict):
            alpha = {k: v.detach() for k, v in alpha.items()}
        phi = inner_adapt(self.model, theta, x_support, y_support, mask, loss_fn=self.loss_fn,
                          alpha=alpha, steps=self.steps if steps is None else steps,
                          first_order=True, adapt=self.adapt_prefixes)
        return {k: v.detach() for k, v in phi.items()}

    def adapt_batch(self, batch: TaskBatch, steps: int | None = None) -> Params:
        """Adapt to every task of ``batch`` at once; φ has a leading task dimension."""
        theta = {k: v.detach() for k, v in self.theta.items()}
        alpha = self._alpha()
        if isinstance(alpha, dict):
            alpha = {k: v.detach() for k, v in alpha.items()}
        xs, ys, ms, *_ = batch_args(batch)
        steps = self.steps if steps is None else steps

        def one(xs_: Tensor, ys_: Tensor, ms_: Tensor) -> Params:
            return inner_adapt(self.model, theta, xs_, ys_, ms_, loss_fn=self.loss_fn, alpha=alpha,
                               steps=steps, first_order=True, adapt=self.adapt_prefixes)

        return {k: v.detach() for k, v in vmap(one, randomness="different")(xs, ys, ms).items()}

    def predict(self, phi: Params, x: Tensor) -> Tensor:
        """f(x; φ) for one task."""
        return torch.func.functional_call(self.model, phi, (x,))

    def predict_batch(self, phi: Params, x: Tensor) -> Tensor:
        """f(xᵢ; φᵢ) for every task: φ and x carry a leading task dimension."""
        return vmap(lambda p, x_: torch.func.functional_call(self.model, p, (x_,)))(phi, x)

    # ------------------------------------------------------------------ training
    def _grad_fn(self, compile: bool) -> Callable:
        """(θ, α, tensors of a batch) -> (meta-gradients, loss), optionally torch.compile'd."""
        model, loss_fn, steps, fo, adapt = (self.model, self.loss_fn, self.steps, self.first_order,
                                            self.adapt_prefixes)

        def loss_of(theta: Params, alphas: Params | None, xs, ys, ms, xq, yq, mq) -> Tensor:
            alpha = self.alpha if alphas is None else alphas
            return _maml_loss(model, theta, xs, ys, ms, xq, yq, mq, loss_fn=loss_fn, alpha=alpha,
                              steps=steps, first_order=fo, adapt=adapt)

        fn = torch.func.grad_and_value(loss_of, argnums=(0, 1) if self.alphas else 0)
        return maybe_compile(fn, compile)

    def step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer, compile: bool = False) -> Tensor:
        """One meta-update θ ← Adam(θ, ∇_θ ℒ(θ)) on ``batch``; returns the (detached) meta-loss."""
        if self._compiled is None or self._compiled[0] != compile:
            self._compiled = (compile, self._grad_fn(compile))
        fn = self._compiled[1]
        theta = {k: v.detach() for k, v in self.theta.items()}
        alphas = {k: v.detach() for k, v in self.alphas.items()} if self.alphas else None
        grads, loss = fn(theta, alphas, *batch_args(batch))
        if self.alphas:
            grads, agrads = grads
            for k, p in self.alphas.items():
                p.grad = agrads[k]
        for k, p in self.theta.items():
            p.grad = grads[k]
        optimizer.step()
        return loss

    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int, beta: float = 1e-3,
            seed: int = 0, compile: bool = False, progress: bool = True, log_every: int = 100,
            optimizer: torch.optim.Optimizer | None = None) -> dict:
        """Meta-train for ``iterations`` steps with Adam (outer step β) on batches from ``sample``.

        ``sample(generator) -> TaskBatch`` draws a fresh meta-batch. Returns the loss history.
        """
        if beta <= 0:
            raise ValueError(f"beta (the outer step size) must be > 0, got {beta}")
        opt = optimizer or adam(self.parameters(), beta)
        name = "Meta-SGD" if self.alphas else ("FOMAML" if self.first_order else "MAML")
        return fit_loop(lambda b: self.step(b, opt, compile), sample, iterations, seed, progress,
                        desc=name, log_every=log_every)
