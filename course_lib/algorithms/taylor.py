"""The Taylor analysis of MAML, first-order MAML and Reptile (Nichol, Achiam & Schulman 2018,
analysis section, "Leading Order Expansion of the Update").

Derived in chapter 04, section 2. Each task τ comes as ``m`` minibatches; an algorithm with
``steps`` (the paper's k) consumes that many of them, drawn without replacement in a random order
(minibatches 1..steps). At θ write
ḡⱼ = ∇L_j(θ) and H̄ⱼ = ∇²L_j(θ) for minibatch j, and

    AvgGrad      = E_{τ,1}[ḡ₁],             AvgGradInner = E_{τ,1,2}[H̄₂ ḡ₁].

Each algorithm's "gradient" g (what its outer optimiser is handed, per task) then has the
expectation

    E[g] = a·AvgGrad − b·α·AvgGradInner + O(α²),

    MAML (1, 2(steps−1)),   FOMAML (1, steps−1),   Reptile (steps, steps(steps−1)/2),

where ``steps`` counts minibatches as the paper's k does:

- MAML and FOMAML with ``steps``: steps−1 inner SGD steps on minibatches 1..steps−1, then the
  gradient of the loss on the last minibatch (so steps = 1 is plain joint training, no inner step);
- Reptile with ``steps``: that many SGD steps, one per minibatch, and g = (θ − φ)/α (Reptile's θ − φ divided
  by the inner step, so its scale is comparable to a gradient).

This module computes both sides *exactly* for a model and a set of tasks: the expectation over
the ordered tuples of ``steps`` distinct minibatches is an average over all of them (all
m!/(m−steps)! orders), AvgGradInner is the mean of H̄ᵢḡⱼ over ordered pairs i ≠ j computed with
exact Hessian-vector products (forward-over-reverse ``torch.func.jvp``), and the updates come
from running the algorithms' own inner loop (`course_lib.algorithms.inner_adapt`), one step per
minibatch. The residual actual − predicted is then O(α²): use float64.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from course_lib.algorithms.functional import LossFn, Params, get_loss, task_loss
from course_lib.algorithms.maml import inner_adapt

__all__ = ["ALGORITHMS", "coefficients", "orderings", "taylor_terms", "sequence_update", "expected_updates",
           "predicted_update", "residual_study", "loglog_slope", "flatten"]

ALGORITHMS = ("maml", "fomaml", "reptile")


def coefficients(algorithm: str, steps: int) -> tuple[int, int]:
    """(a, b) of E[g] = a·AvgGrad − b·α·AvgGradInner + O(α²) for ``algorithm`` with ``steps``.

    MAML (1, 2(steps−1)), FOMAML (1, steps−1), Reptile (steps, steps(steps−1)/2); ``steps`` (the
    paper's k) counts minibatches as in the module docstring. Derived in chapter 04, section 2
    (Nichol et al. 2018, "Leading Order Expansion of the Update").
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}")
    try:
        n = operator.index(steps)
    except TypeError:
        n = 0
    if isinstance(steps, bool) or n < 1:
        raise ValueError(f"steps must be an integer >= 1 (the number of minibatches the update uses), "
                         f"got {steps!r}")
    return {"maml": (1, 2 * (n - 1)), "fomaml": (1, n - 1), "reptile": (n, n * (n - 1) // 2)}[algorithm]


def orderings(m: int, steps: int) -> Tensor:
    """Every ordered tuple of ``steps`` distinct minibatch indices out of ``m``: ``[m!/(m−steps)!, steps]``.

    Derived in chapter 04, section 2 (the expectation over minibatch orders, taken exactly).
    """
    if not 1 <= steps <= m:
        raise ValueError(f"steps={steps} needs 1 <= steps <= m={m} distinct minibatches per task; "
                         "give each task more minibatches or use fewer steps")
    return torch.tensor(list(itertools.permutations(range(m), steps)), dtype=torch.long)


def flatten(params: Params) -> Tensor:
    """One vector from a parameter dictionary (in its key order): ``[n_params]`` (chapter 04, section 2)."""
    return torch.cat([v.reshape(-1) for v in params.values()])


def _check(model: nn.Module, theta: Params | None, x: Tensor, y: Tensor, need: int) -> Params:
    if x.dim() < 3 or y.dim() < 3:
        raise ValueError(f"x and y must be [tasks, minibatches, n, ...]; got x {tuple(x.shape)}, y {tuple(y.shape)}")
    if x.shape[:3] != y.shape[:3]:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} disagree on [tasks, minibatches, n]")
    if x.shape[1] < need:
        raise ValueError(f"each task needs at least {need} minibatches here, got {x.shape[1]}; "
                         "split each task's data into more minibatches (x[:, j] is minibatch j)")
    if x.shape[2] == 0:
        raise ValueError("minibatches are empty: give each at least one example")
    if x.is_floating_point() and torch.isnan(x).any() or y.is_floating_point() and torch.isnan(y).any():
        raise ValueError("x or y contains NaN; drop missing answers before building minibatches")
    theta = dict(model.named_parameters()) if theta is None else theta
    return {name: v.detach() for name, v in theta.items()}


def taylor_terms(model: nn.Module, x: Tensor, y: Tensor, theta: Params | None = None, *,
                 loss: str | LossFn = "mse") -> dict[str, Params]:
    """AvgGrad = E[ḡ₁] and AvgGradInner = E[H̄₂ḡ₁] over tasks and pairs of distinct minibatches.

    Shapes: x ``[tasks, m, n, *features]``, y ``[tasks, m, n, *targets]`` (m ≥ 2 minibatches of n
    examples per task). Per task, AvgGradInner averages H̄ᵢḡⱼ over the m(m−1) ordered pairs i ≠ j,
    i.e. (1/(m(m−1))) Σᵢ H̄ᵢ (Σⱼ ḡⱼ − ḡᵢ), with exact Hessian-vector products. θ defaults to the
    model's parameters. Returns ``{"avg_grad": Params, "avg_grad_inner": Params}``.
    Derived in chapter 04, section 2.
    """
    theta = _check(model, theta, x, y, need=2)
    loss_fn = get_loss(loss)
    m = x.shape[1]

    def minibatch_loss(p: Params, xb: Tensor, yb: Tensor) -> Tensor:
        return task_loss(model, p, loss_fn, xb, yb)

    def per_task(xt: Tensor, yt: Tensor) -> tuple[Params, Params]:
        grads = vmap(grad(minibatch_loss), in_dims=(None, 0, 0))(theta, xt, yt)  # ḡⱼ, leading dim m
        total = {name: g.sum(0) for name, g in grads.items()}
        others = {name: total[name][None] - grads[name] for name in grads}                    # Σ_{j≠i} ḡⱼ

        def hvp(xb: Tensor, yb: Tensor, v: Params) -> Params:                     # H̄ᵢ v
            return jvp(lambda p: grad(minibatch_loss)(p, xb, yb), (theta,), (v,))[1]

        hv = vmap(hvp)(xt, yt, others)
        return ({name: g.mean(0) for name, g in grads.items()},
                {name: h.sum(0) / (m * (m - 1)) for name, h in hv.items()})

    with warnings.catch_warnings():  # torch's first jvp registers decompositions via torch.jit.script
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        avg_grad, inner = vmap(per_task)(x, y)
    return {"avg_grad": {name: v.mean(0) for name, v in avg_grad.items()},
            "avg_grad_inner": {name: v.mean(0) for name, v in inner.items()}}


def sequence_update(model: nn.Module, theta: Params, x: Tensor, y: Tensor, *, alpha: float,
                    loss: str | LossFn = "mse") -> dict[str, Params]:
    """The three algorithms' g on ONE ordered sequence of minibatches (no task dimension).

    Shapes: x ``[steps, n, *features]``, y ``[steps, n, *targets]``. Each inner step is one call of
    `inner_adapt` (one SGD step on one minibatch), exactly the algorithms' own inner loop:
    MAML differentiates the last minibatch's loss through the steps−1 inner steps before it,
    FOMAML does the same with the inner gradients detached (= that loss's gradient at the adapted
    φ), Reptile returns (θ − φ)/α after one step on every minibatch.
    Derived in chapter 04, section 2.
    """
    steps = x.shape[0]
    loss_fn = get_loss(loss)

    def adapted(th: Params, n_steps: int, first_order: bool) -> Params:
        phi = th
        for j in range(n_steps):
            phi = inner_adapt(model, phi, x[j], y[j], None, loss_fn=loss_fn, alpha=alpha, steps=1,
                              first_order=first_order)
        return phi

    def outer(th: Params, first_order: bool) -> Tensor:
        return task_loss(model, adapted(th, steps - 1, first_order), loss_fn, x[steps - 1], y[steps - 1])

    phi = adapted(theta, steps, True)
    return {"maml": grad(outer)(theta, False), "fomaml": grad(outer)(theta, True),
            "reptile": {n: (theta[n] - phi[n]) / alpha for n in theta}}


def expected_updates(model: nn.Module, x: Tensor, y: Tensor, steps: int, alpha: float,
                     theta: Params | None = None, *, loss: str | LossFn = "mse") -> dict[str, Params]:
    """E[g] of MAML, FOMAML and Reptile with ``steps``, averaged exactly over tasks and minibatch orders.

    Shapes: x ``[tasks, m, n, *features]`` with steps ≤ m. Every ordered ``steps``-tuple of distinct
    minibatches of every task is run (vmapped) through `sequence_update`; the result is the mean.
    Returns ``{"maml": Params, "fomaml": Params, "reptile": Params}``. Derived in chapter 04, section 2.
    """
    theta = _check(model, theta, x, y, need=steps)
    if alpha <= 0:
        raise ValueError(f"alpha (the inner step) must be > 0, got {alpha}")
    order = orderings(x.shape[1], steps).to(x.device)                     # [P, steps]
    xs = x[:, order].flatten(0, 1)                                        # [tasks·P, steps, n, ...]
    ys = y[:, order].flatten(0, 1)
    one = lambda xq, yq: sequence_update(model, theta, xq, yq, alpha=alpha, loss=loss)  # noqa: E731
    out = vmap(one)(xs, ys)
    return {a: {n: v.mean(0) for n, v in out[a].items()} for a in ALGORITHMS}


def predicted_update(terms: dict[str, Params], algorithm: str, steps: int, alpha: float,
                     second_order_term: bool = True) -> Params:
    """a·AvgGrad − b·α·AvgGradInner for ``algorithm`` with ``steps`` (``terms`` from `taylor_terms`).

    With ``second_order_term=False`` only a·AvgGrad (the leading term) is returned. Every entry
    has its parameter's shape. Derived in chapter 04, section 2.
    """
    a, b = coefficients(algorithm, steps)
    b = b if second_order_term else 0
    return {n: a * terms["avg_grad"][n] - b * alpha * terms["avg_grad_inner"][n] for n in terms["avg_grad"]}


def residual_study(model: nn.Module, x: Tensor, y: Tensor, alphas: tuple[float, ...],
                   steps_grid: tuple[int, ...], theta: Params | None = None, *, loss: str | LossFn = "mse",
                   progress: bool = True) -> list[dict]:
    """‖actual − predicted‖ for every algorithm, number of steps and α: chapter 04's residual figure.

    Shapes: x ``[tasks, m, n, *features]`` as in `taylor_terms`. Each row: ``algorithm, steps,
    alpha, a, b, update_norm`` (‖E[g]‖), ``residual`` (against the full
    prediction, O(α²)) and ``residual_leading`` (against a·AvgGrad alone, O(α) once b > 0).
    Derived in chapter 04, section 2.
    """
    from tqdm.auto import tqdm

    if not alphas or min(alphas) <= 0:
        raise ValueError(f"alphas must be a non-empty tuple of positive step sizes, got {alphas}")
    terms = taylor_terms(model, x, y, theta, loss=loss)
    rows = []
    for steps, alpha in tqdm(list(itertools.product(steps_grid, alphas)), desc="Taylor check",
                             disable=not progress):
        actual = expected_updates(model, x, y, steps, alpha, theta, loss=loss)
        for algo in ALGORITHMS:
            a, b = coefficients(algo, steps)
            got = flatten(actual[algo])
            full = flatten(predicted_update(terms, algo, steps, alpha))
            lead = flatten(predicted_update(terms, algo, steps, alpha, second_order_term=False))
            rows.append({"algorithm": algo, "steps": steps, "alpha": alpha, "a": a, "b": b,
                         "update_norm": float(got.norm()), "residual": float((got - full).norm()),
                         "residual_leading": float((got - lead).norm())})
    return rows


def loglog_slope(alphas: Sequence[float], residuals: Sequence[float]) -> float:
    """Least-squares slope of log(residual) against log(α): 2 for an O(α²) residual (chapter 04, section 2).

    alphas and residuals: sequences of the same length (≥ 2), residuals finite and positive.
    """
    a = np.log(np.asarray(alphas, dtype=float))
    r = np.log(np.asarray(residuals, dtype=float))
    if len(a) < 2 or not np.all(np.isfinite(r)):
        raise ValueError("need at least two alphas and finite, positive residuals to fit a slope")
    return float(np.polyfit(a, r, 1)[0])

