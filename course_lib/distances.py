"""Distances between embeddings: Euclidean, squared Euclidean, cosine, Mahalanobis, for batches.

Derived in chapter 02 (Distance metrics and metric-based meta-learning), sections 1-2. Every
metric here is *pairwise*: it compares each of n rows of ``a`` with each of m rows of ``b``::

    a [..., n, d],  b [..., m, d]  ->  D [..., n, m]

with the leading ``...`` (e.g. a task dimension) broadcast like ``torch.matmul``. This is the
shape a nearest-neighbour or nearest-prototype classifier needs: queries x prototypes.

    from course_lib.distances import pairwise, get_distance
    D = pairwise(z_query, prototypes, "squared_euclidean")   # [tasks, n_query, n_way]

Why squared Euclidean is the default for prototypes: it is a Bregman divergence, so the class
mean is the point that minimises the expected divergence to the class's examples (chapter 02,
section 5); cosine distance is not, and the mean is not its minimiser.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "euclidean",
    "squared_euclidean",
    "cosine",
    "cosine_similarity",
    "mahalanobis",
    "shrunk_covariance",
    "pairwise",
    "get_distance",
    "DISTANCES",
]

Distance = Callable[[Tensor, Tensor], Tensor]

#: Added to norms before dividing in the cosine metrics, so a zero vector has similarity 0
#: (distance 1) instead of NaN. scipy returns NaN there; embeddings after a ReLU can be all zero.
COSINE_EPS = 1e-12


# ------------------------------------------------------------------------------ validation

def _check_pair(a: Tensor, b: Tensor, name: str = "distance") -> None:
    """Raise a ValueError that says what to change when ``a`` and ``b`` cannot be compared."""
    for label, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__} "
                             "(wrap arrays with torch.as_tensor)")
        if t.dim() < 2:
            raise ValueError(f"{name}: {label} must have shape [..., rows, features], got {tuple(t.shape)}; "
                             "for single vectors use x[None, :]")
        if not t.is_floating_point():
            raise ValueError(f"{name}: {label} must be a floating-point tensor, got {t.dtype}; "
                             "call .float() first")
        if t.shape[-2] == 0:
            raise ValueError(f"{name}: {label} has no rows (shape {tuple(t.shape)})")
        if torch.isnan(t).any():
            raise ValueError(f"{name}: {label} contains NaN; drop or impute missing values first")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name}: feature dimensions differ: a has {a.shape[-1]} features, b has "
                         f"{b.shape[-1]}; both must end in the same d")
    if a.dtype != b.dtype:
        raise ValueError(f"{name}: a is {a.dtype} but b is {b.dtype}; cast one of them")
    if a.device != b.device:
        raise ValueError(f"{name}: a is on {a.device} but b is on {b.device}; move them to one device")
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"{name}: batch dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} "
                         "do not broadcast") from None


# ------------------------------------------------------------------ kernels (trust their inputs)

def _squared_euclidean(a: Tensor, b: Tensor) -> Tensor:
    # ‖a − b‖² = ‖a‖² − 2 a·b + ‖b‖²: one matmul instead of an [n, m, d] difference tensor.
    sq = a.pow(2).sum(-1)[..., :, None] - 2.0 * (a @ b.transpose(-1, -2)) + b.pow(2).sum(-1)[..., None, :]
    return sq.clamp_min(0.0)


def _euclidean(a: Tensor, b: Tensor) -> Tensor:
    # torch.cdist's backward is 0 (not NaN) where a distance is exactly 0, unlike sqrt(_squared(...)).
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = a.expand(*batch, *a.shape[-2:])
    b = b.expand(*batch, *b.shape[-2:])
    return torch.cdist(a, b, p=2.0)


def _cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    a = F.normalize(a, dim=-1, eps=COSINE_EPS)
    b = F.normalize(b, dim=-1, eps=COSINE_EPS)
    return a @ b.transpose(-1, -2)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return (1.0 - _cosine_similarity(a, b)).clamp(0.0, 2.0)  # rounding can give -1e-16


def _precision_factor(cov: Tensor | None, precision: Tensor | None, d: int, like: Tensor) -> Tensor:
    """A matrix L with L Lᵀ = Σ⁻¹ (the Cholesky factor of the precision), validated."""
    if (cov is None) == (precision is None):
        raise ValueError("mahalanobis: pass exactly one of cov= (covariance Σ) or precision= (Σ⁻¹); "
                         "estimate Σ from data with shrunk_covariance(x)")
    given, label = (cov, "cov") if cov is not None else (precision, "precision")
    given = torch.as_tensor(given).to(dtype=like.dtype, device=like.device)
    if given.shape != (d, d):
        raise ValueError(f"mahalanobis: {label} must be [{d}, {d}] to match {d} features, got {tuple(given.shape)}")
    if torch.isnan(given).any():
        raise ValueError(f"mahalanobis: {label} contains NaN")
    if not torch.allclose(given, given.T, rtol=1e-5, atol=1e-8 * float(given.abs().max().clamp_min(1.0))):
        raise ValueError(f"mahalanobis: {label} must be symmetric; use (S + S.T) / 2")
    chol, info = torch.linalg.cholesky_ex(given)
    if int(info) != 0:
        rank = int(torch.linalg.matrix_rank(given))
        raise ValueError(f"mahalanobis: {label} is singular or not positive definite (rank {rank} < {d} "
                         "or a non-positive eigenvalue). With few examples per feature use "
                         "shrunk_covariance(x) (Ledoit-Wolf) or shrunk_covariance(x, shrinkage=0.1)")
    if precision is not None:
        return chol  # precision = L Lᵀ
    # Σ = C Cᵀ  =>  Σ⁻¹ = C⁻ᵀ C⁻¹, so L = C⁻ᵀ satisfies L Lᵀ = Σ⁻¹.
    eye = torch.eye(d, dtype=like.dtype, device=like.device)
    return torch.linalg.solve_triangular(chol, eye, upper=False).T


# ------------------------------------------------------------------------------ public metrics

def squared_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ‖aᵢ − bⱼ‖². a ``[..., n, d]``, b ``[..., m, d]`` -> ``[..., n, m]``.

    The ProtoNet default: a Bregman divergence, so the class mean is the optimal prototype, and
    nearest-prototype classification is linear in the embedding. Derived in chapter 02, section 1.
    """
    _check_pair(a, b, "squared_euclidean")
    return _squared_euclidean(a, b)


def euclidean(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise Euclidean distances ‖aᵢ − bⱼ‖. a ``[..., n, d]``, b ``[..., m, d]`` -> ``[..., n, m]``.

    A true metric (symmetric, non-negative, triangle inequality). Derived in chapter 02, section 1.
    """
    _check_pair(a, b, "euclidean")
    return _euclidean(a, b)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise cosine similarities aᵢ·bⱼ / (‖aᵢ‖‖bⱼ‖) in [−1, 1]. ``[..., n, d], [..., m, d] -> [..., n, m]``.

    A zero vector has similarity 0 with everything (scipy gives NaN). Chapter 02, section 1.
    """
    _check_pair(a, b, "cosine_similarity")
    return _cosine_similarity(a, b)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise cosine *distances* 1 − cos(aᵢ, bⱼ) in [0, 2]. ``[..., n, d], [..., m, d] -> [..., n, m]``.

    Ignores vector length (only the direction counts). Not a Bregman divergence: the class mean
    is not the point that minimises the summed cosine distance. Derived in chapter 02, section 1.
    """
    _check_pair(a, b, "cosine")
    return _cosine(a, b)


def mahalanobis(a: Tensor, b: Tensor, cov: Tensor | None = None, precision: Tensor | None = None) -> Tensor:
    """Pairwise Mahalanobis distances √((aᵢ − bⱼ)ᵀ Σ⁻¹ (aᵢ − bⱼ)). ``[..., n, d], [..., m, d] -> [..., n, m]``.

    Give the covariance ``cov`` Σ ``[d, d]`` or the precision ``precision`` Σ⁻¹ (exactly one).
    Computed as the Euclidean distance after the whitening map x -> x L with L Lᵀ = Σ⁻¹, so
    Σ = I gives the Euclidean distance. A singular Σ (fewer examples than features) raises;
    estimate Σ with ``shrunk_covariance``. Derived in chapter 02, section 1.
    """
    _check_pair(a, b, "mahalanobis")
    factor = _precision_factor(cov, precision, a.shape[-1], a)
    return _euclidean(a @ factor, b @ factor)


def shrunk_covariance(x: Tensor | np.ndarray, shrinkage: float | None = None) -> Tensor:
    """A well-conditioned covariance estimate Σ ``[d, d]`` from data ``x [n, d]`` (n >= 2).

    ``shrinkage=None`` picks the amount with Ledoit-Wolf (``sklearn.covariance.LedoitWolf``);
    a float in [0, 1] blends the sample covariance S with a scaled identity:
    (1 − s) S + s · tr(S)/d · I (``sklearn.covariance.ShrunkCovariance``). The result is positive
    definite whenever s > 0 and the data are not constant, so ``mahalanobis`` can use it.
    Chapter 02, section 1.
    """
    from sklearn.covariance import LedoitWolf, ShrunkCovariance

    like = x if isinstance(x, Tensor) else None
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"shrunk_covariance: x must be [examples, features], got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"shrunk_covariance: need at least 2 examples to estimate a covariance, got {arr.shape[0]}")
    if np.isnan(arr).any():
        raise ValueError("shrunk_covariance: x contains NaN; drop or impute missing values first")
    if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrunk_covariance: shrinkage must be in [0, 1] or None (Ledoit-Wolf), got {shrinkage}")
    est = LedoitWolf() if shrinkage is None else ShrunkCovariance(shrinkage=shrinkage)
    cov = torch.as_tensor(est.fit(arr).covariance_)
    if like is not None:
        cov = cov.to(dtype=like.dtype if like.is_floating_point() else torch.get_default_dtype(),
                     device=like.device)
    else:
        cov = cov.to(torch.get_default_dtype())
    return cov


# ------------------------------------------------------------------------------ registry

#: The named metrics. Each maps ``(a [..., n, d], b [..., m, d])`` to ``[..., n, m]`` and validates.
DISTANCES: dict[str, Callable[..., Tensor]] = {
    "euclidean": euclidean,
    "squared_euclidean": squared_euclidean,
    "cosine": cosine,
    "mahalanobis": mahalanobis,
}

# Unchecked twins used inside training loops (inputs already validated once at the boundary).
_KERNELS: dict[str, Distance] = {
    "euclidean": _euclidean,
    "squared_euclidean": _squared_euclidean,
    "cosine": _cosine,
}


def get_distance(name: str | Callable[..., Tensor], *, validate: bool = True, **params) -> Distance:
    """Resolve a metric name (or pass a callable through) to ``f(a, b) -> [..., n, m]``.

    ``params`` are bound to the metric, e.g. ``get_distance("mahalanobis", cov=S)``.
    Names: ``"euclidean" | "squared_euclidean" | "cosine" | "mahalanobis"``. With
    ``validate=False`` a named metric comes without its input checks (for a training loop
    whose inputs were validated once at its boundary, e.g. ProtoNet's episodes); Mahalanobis
    always validates its Σ. Shapes: a ``[..., n, d]``, b ``[..., m, d]``. Chapter 02, section 1.
    """
    if callable(name):
        return functools.partial(name, **params) if params else name
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; use one of {sorted(DISTANCES)} or a callable "
                         "(a [..., n, d], b [..., m, d]) -> [..., n, m]")
    if name == "mahalanobis" and not params:
        raise ValueError("the mahalanobis distance needs cov= or precision=, e.g. "
                         "get_distance('mahalanobis', cov=shrunk_covariance(x))")
    if params and name != "mahalanobis":
        raise ValueError(f"the {name} distance takes no parameters, got {sorted(params)}")
    fn = DISTANCES[name] if validate else _KERNELS.get(name, DISTANCES[name])
    return functools.partial(fn, **params) if params else fn


def pairwise(a: Tensor, b: Tensor, metric: str | Callable[..., Tensor] = "squared_euclidean", **params) -> Tensor:
    """Distances between every row of ``a [..., n, d]`` and every row of ``b [..., m, d]`` -> ``[..., n, m]``.

    ``metric`` is a name from ``DISTANCES`` or a callable; ``params`` go to it (Mahalanobis:
    ``cov=`` or ``precision=``). Leading dimensions broadcast, so a ``[tasks, n_query, d]`` query
    set against ``[tasks, n_way, d]`` prototypes gives ``[tasks, n_query, n_way]``.
    Derived in chapter 02, section 1.
    """
    _check_pair(a, b, "pairwise")
    out = get_distance(metric, **params)(a, b)
    expected = (*torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-2])
    if tuple(out.shape) != expected:
        raise ValueError(f"pairwise: metric {metric!r} returned shape {tuple(out.shape)}, expected {expected}")
    return out
