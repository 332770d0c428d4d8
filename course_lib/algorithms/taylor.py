"""The Taylor analysis of MAML, first-order MAML and Reptile (Nichol, Achiam & Schulman 2018, §5).

Derived in chapter 04, section 2. Each task τ comes as ``m`` minibatches; an algorithm with k steps
consumes k of them, drawn without replacement in a random order (minibatches 1..k). At θ write
ḡⱼ = ∇L_j(θ) and H̄ⱼ = ∇²L_j(θ) for minibatch j, and

    AvgGrad      = E_{τ,1}[ḡ₁],             AvgGradInner = E_{τ,1,2}[H̄₂ ḡ₁].

Each algorithm's "gradient" g (what its outer optimiser is handed, per task) then has the
expectation

    E[g] = a·AvgGrad − b·α·AvgGradInner + O(α²),

    MAML (1, 2(k−1)),   FOMAML (1, k−1),   Reptile (k, k(k−1)/2),

where "k" is counted as in the paper:

- MAML and FOMAML with k: k−1 inner SGD steps on minibatches 1..k−1, then the gradient of the
  loss on minibatch k (so k = 1 is plain joint training, no inner step);
- Reptile with k: k SGD steps on minibatches 1..k, and g = (θ − φ)/α (Reptile's θ − φ divided
  by the inner step, so its scale is comparable to a gradient).

This module computes both sides *exactly* for a model and a set of tasks: the expectation over
the ordered k-tuples of distinct minibatches is an average over all of them (all
m!/(m−k)! orders), AvgGradInner is the mean of H̄ᵢḡⱼ over ordered pairs i ≠ j computed with
exact Hessian-vector products (forward-over-reverse ``torch.func.jvp``), and the updates come
from running the algorithms' own inner loop (`course_lib.algorithms.inner_adapt`), one step per
minibatch. The residual actual − predicted is then O(α²): use float64.
"""

from __future__ import annotations

import itertools
import operator
import warnings

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from course_lib.algorithms.functional import LossFn, Params, get_loss, task_loss
from course_lib.algorithms.maml import inner_adapt

__all__ = ["ALGORITHMS", "coefficients", "orderings", "taylor_terms", "sequence_update", "expected_updates",
           "predicted_update", "residual_study", "loglog_slope", "flatten"]

ALGORITHMS = ("maml", "fomaml", "reptile")


def coefficients(algorithm: str, k: int) -> tuple[int, int]:
    """(a, b) of E[g] = a·AvgGrad − b·α·AvgGradInner + O(α²) for ``algorithm`` with k steps.

    MAML (1, 2(k−1)), FOMAML (1, k−1), Reptile (k, k(k−1)/2); k counts minibatches as in the
    module docstring. Derived in chapter 04, section 2 (Nichol et al. 2018, §5.1).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}")
    try:
        steps = operator.index(k)
    except TypeError:
        steps = 0
    if steps < 1:
        raise ValueError(f"k must be an integer >= 1 (the number of minibatches the update uses), got {k!r}")
    k = steps
    return {"maml": (1, 2 * (k - 1)), "fomaml": (1, k - 1), "reptile": (k, k * (k - 1) // 2)}[algorithm]


def orderings(m: int, k: int) -> Tensor:
    """Every ordered k-tuple of distinct minibatch indices out of ``m``: ``[m!/(m−k)!, k]`` (long)."""
    if not 1 <= k <= m:
        raise ValueError(f"k={k} steps need 1 <= k <= m={m} distinct minibatches per task; "
                         "give each task more minibatches or use fewer steps")
    return torch.tensor(list(itertools.permutations(range(m), k)), dtype=torch.long)


def flatten(params: Params) -> Tensor:
    """One vector from a parameter dictionary (in its key order): ``[n_params]``."""
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
    return {k: v.detach() for k, v in theta.items()}


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
        total = {k: g.sum(0) for k, g in grads.items()}
        others = {k: total[k][None] - grads[k] for k in grads}                    # Σ_{j≠i} ḡⱼ

        def hvp(xb: Tensor, yb: Tensor, v: Params) -> Params:                     # H̄ᵢ v
            return jvp(lambda p: grad(minibatch_loss)(p, xb, yb), (theta,), (v,))[1]

        hv = vmap(hvp)(xt, yt, others)
        return ({k: g.mean(0) for k, g in grads.items()},
                {k: h.sum(0) / (m * (m - 1)) for k, h in hv.items()})

    with warnings.catch_warnings():  # torch's first jvp registers decompositions via torch.jit.script
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        avg_grad, inner = vmap(per_task)(x, y)
    return {"avg_grad": {k: v.mean(0) for k, v in avg_grad.items()},
            "avg_grad_inner": {k: v.mean(0) for k, v in inner.items()}}


def sequence_update(model: nn.Module, theta: Params, x: Tensor, y: Tensor, *, alpha: float,
                    loss: str | LossFn = "mse") -> dict[str, Params]:
    """The three algorithms' g on ONE ordered sequence of k minibatches (no task dimension).

    Shapes: x ``[k, n, *features]``, y ``[k, n, *targets]``. Each inner step is one call of
    `inner_adapt` (one SGD step on one minibatch), exactly the algorithms' own inner loop:
    MAML differentiates L_k(φ_k) through the k−1 steps, FOMAML does the same with the inner
    gradients detached (= ∇L_k at φ_k), Reptile returns (θ − φ_{k+1})/α after k steps.
    Derived in chapter 04, section 2.
    """
    k = x.shape[0]
    loss_fn = get_loss(loss)

    def adapted(th: Params, n_steps: int, first_order: bool) -> Params:
        phi = th
        for j in range(n_steps):
            phi = inner_adapt(model, phi, x[j], y[j], None, loss_fn=loss_fn, alpha=alpha, steps=1,
                              first_order=first_order)
        return phi

    def outer(th: Params, first_order: bool) -> Tensor:
        return task_loss(model, adapted(th, k - 1, first_order), loss_fn, x[k - 1], y[k - 1])

    phi = adapted(theta, k, True)
    return {"maml": grad(outer)(theta, False), "fomaml": grad(outer)(theta, True),
            "reptile": {n: (theta[n] - phi[n]) / alpha for n in theta}}


def expected_updates(model: nn.Module, x: Tensor, y: Tensor, k: int, alpha: float,
                     theta: Params | None = None, *, loss: str | LossFn = "mse") -> dict[str, Params]:
    """E[g] of MAML, FOMAML and Reptile with k steps, averaged exactly over tasks and minibatch orders.

    Shapes: x ``[tasks, m, n, *features]`` with k ≤ m. Every ordered k-tuple of distinct
    minibatches of every task is run (vmapped) through `sequence_update`; the result is the mean.
    Returns ``{"maml": Params, "fomaml": Params, "reptile": Params}``. Derived in chapter 04, section 2.
    """
    theta = _check(model, theta, x, y, need=k)
    if alpha <= 0:
        raise ValueError(f"alpha (the inner step) must be > 0, got {alpha}")
    order = orderings(x.shape[1], k).to(x.device)                         # [P, k]
    xs = x[:, order].flatten(0, 1)                                        # [tasks·P, k, n, ...]
    ys = y[:, order].flatten(0, 1)
    one = lambda xq, yq: sequence_update(model, theta, xq, yq, alpha=alpha, loss=loss)  # noqa: E731
    out = vmap(one)(xs, ys)
    return {a: {n: v.mean(0) for n, v in out[a].items()} for a in ALGORITHMS}


def predicted_update(terms: dict[str, Params], algorithm: str, k: int, alpha: float,
                     second_order_term: bool = True) -> Params:
    """a·AvgGrad − b·α·AvgGradInner for ``algorithm`` with k steps (``terms`` from `taylor_terms`).

    With ``second_order_term=False`` only a·AvgGrad (the leading term) is returned.
    """
    a, b = coefficients(algorithm, k)
    b = b if second_order_term else 0
    return {n: a * terms["avg_grad"][n] - b * alpha * terms["avg_grad_inner"][n] for n in terms["avg_grad"]}


def residual_study(model: nn.Module, x: Tensor, y: Tensor, alphas: tuple[float, ...], ks: tuple[int, ...],
                   theta: Params | None = None, *, loss: str | LossFn = "mse", progress: bool = True) -> list[dict]:
    """‖actual − predicted‖ for every algorithm, k and α: the rows of chapter 04's residual figure.

    Each row: ``algorithm, k, alpha, a, b, update_norm`` (‖E[g]‖), ``residual`` (against the full
    prediction, O(α²)) and ``residual_leading`` (against a·AvgGrad alone, O(α) once b > 0).
    Derived in chapter 04, section 2.
    """
    from tqdm.auto import tqdm

    if not alphas or min(alphas) <= 0:
        raise ValueError(f"alphas must be a non-empty tuple of positive step sizes, got {alphas}")
    terms = taylor_terms(model, x, y, theta, loss=loss)
    rows = []
    for k, alpha in tqdm(list(itertools.product(ks, alphas)), desc="Taylor check", disable=not progress):
        actual = expected_updates(model, x, y, k, alpha, theta, loss=loss)
        for algo in ALGORITHMS:
            a, b = coefficients(algo, k)
            got = flatten(actual[algo])
            full = flatten(predicted_update(terms, algo, k, alpha))
            lead = flatten(predicted_update(terms, algo, k, alpha, second_order_term=False))
            rows.append({"algorithm": algo, "k": k, "alpha": alpha, "a": a, "b": b,
                         "update_norm": float(got.norm()), "residual": float((got - full).norm()),
                         "residual_leading": float((got - lead).norm())})
    return rows


def loglog_slope(alphas, residuals) -> float:
    """Least-squares slope of log(residual) against log(α): 2 for an O(α²) residual."""
    a = np.log(np.asarray(alphas, dtype=float))
    r = np.log(np.asarray(residuals, dtype=float))
    if len(a) < 2 or not np.all(np.isfinite(r)):
        raise ValueError("need at least two alphas and finite, positive residuals to fit a slope")
    return float(np.polyfit(a, r, 1)[0])

