"""Tasks: a learner (or a sinusoid, or an N-way problem) with a support set and a query set.

Derived in chapter 01 (Personalization as few-shot learning). A *task* i has a support set
𝒟ᵢˢ (the K interactions we may adapt on) and a query set 𝒟ᵢ^q (what we must predict). A
`TaskBatch` stacks many tasks along a leading task dimension so that algorithms can `vmap` over
them. Ragged tasks (learners with different numbers of answered items) are padded and carry
boolean masks: True marks a real example, False a padding slot that every loss ignores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TaskBatch",
    "permutation",
    "shuffled",
    "sample_sinusoid_tasks",
    "sinusoid",
    "sample_episodes",
    "learner_tasks",
]


@dataclass(frozen=True)
class TaskBatch:
    """Support and query sets of several tasks, stacked on a leading task dimension.

    Shapes: ``x_support [tasks, k_shot, *features]``, ``y_support [tasks, k_shot, *targets]``,
    ``x_query [tasks, n_query, *features]``, ``y_query [tasks, n_query, *targets]``; optional
    ``support_mask [tasks, k_shot]`` and ``query_mask [tasks, n_query]`` (bool, True = real).
    """

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor
    support_mask: Tensor | None = None
    query_mask: Tensor | None = None

    def __post_init__(self) -> None:
        names = ("x_support", "y_support", "x_query", "y_query")
        tensors = [getattr(self, n) for n in names]
        for name, t in zip(names, tensors):
            if not isinstance(t, Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() < 2:
                raise ValueError(f"{name} must have shape [tasks, examples, ...], got {tuple(t.shape)}")
            if t.is_floating_point() and torch.isnan(t).any():
                raise ValueError(f"{name} contains NaN; drop missing answers before building tasks "
                                 "(learner_tasks does this for you)")
        n_tasks = {t.shape[0] for t in tensors}
        if len(n_tasks) != 1:
            raise ValueError(f"all tensors need the same number of tasks; got {[tuple(t.shape) for t in tensors]}")
        if self.x_support.shape[1] != self.y_support.shape[1]:
            raise ValueError(f"x_support has {self.x_support.shape[1]} examples per task but y_support has "
                             f"{self.y_support.shape[1]}")
        if self.x_query.shape[1] != self.y_query.shape[1]:
            raise ValueError(f"x_query has {self.x_query.shape[1]} examples per task but y_query has "
                             f"{self.y_query.shape[1]}")
        if self.x_support.shape[1] == 0:
            raise ValueError("the support set is empty (k_shot = 0); give every task at least one example")
        if self.x_query.shape[1] == 0:
            raise ValueError("the query set is empty; every task needs at least one query example")
        for name, mask, ref in (("support_mask", self.support_mask, self.x_support),
                                ("query_mask", self.query_mask, self.x_query)):
            if mask is None:
                continue
            if mask.dtype != torch.bool or tuple(mask.shape) != tuple(ref.shape[:2]):
                raise ValueError(f"{name} must be a bool tensor of shape {tuple(ref.shape[:2])}, "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
            if not mask.any(dim=1).all():
                raise ValueError(f"{name} leaves some task with no example at all")

    @property
    def n_tasks(self) -> int:
        """Number of tasks in the batch."""
        return self.x_support.shape[0]

    def to(self, device: torch.device | str) -> "TaskBatch":
        """Move every tensor to ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TaskBatch(*(move(getattr(self, f)) for f in
                           ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask")))

    def task(self, i: int) -> "TaskBatch":
        """Task ``i`` alone, as a batch of one."""
        if not -self.n_tasks <= i < self.n_tasks:
            raise IndexError(f"task index {i} out of range for a batch of {self.n_tasks} tasks")
        pick = lambda t: None if t is None else t[i : i + 1] if i != -1 else t[-1:]  # noqa: E731
        return replace(self, **{f: pick(getattr(self, f)) for f in
                                ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask")})


# --------------------------------------------------------------------------- seeded shuffles

def permutation(n: int, generator: torch.Generator | np.random.Generator | None) -> Tensor | np.ndarray:
    """A random order of 0..n−1 drawn from ``generator``: the one shuffle every sampler uses.

    A ``torch.Generator`` gives a LongTensor ``[n]`` (``torch.randperm``); a NumPy
    ``np.random.Generator`` gives an int64 array ``[n]`` (``Generator.permutation``), so a
    study seeded through NumPy keeps its exact draws; None draws from torch's global generator
    (seeded by ``seed_everything``). The same seed gives the same order. Derived in chapter 01,
    section 3 (split by learner).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer (how many items to order), got {n!r}")
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randperm(int(n), generator=generator)
    if isinstance(generator, np.random.Generator):
        return generator.permutation(int(n))
    raise ValueError(f"generator must be a torch.Generator or a numpy.random.Generator, got "
                     f"{type(generator).__name__}; e.g. torch.Generator().manual_seed(0)")


def shuffled(values: Tensor | np.ndarray,
             generator: torch.Generator | np.random.Generator | None) -> Tensor | np.ndarray:
    """``values`` (rows ``[n, ...]``) in the random order `permutation` draws from ``generator``."""
    return values[permutation(len(values), generator)]


# --------------------------------------------------------------------------- sinusoids (chapter 03)

def sinusoid(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """y = A sin(x − b) for each task. Shapes: x ``[tasks, n, 1]``, A and b ``[tasks]``."""
    return amplitude[:, None, None] * torch.sin(x - phase[:, None, None])


def sample_sinusoid_tasks(
    n_tasks: int,
    k_shot: int,
    n_query: int | None = None,
    *,
    generator: torch.Generator | None = None,
    amplitude_range: tuple[float, float] = (0.1, 5.0),
    phase_range: tuple[float, float] = (0.0, math.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
    device: torch.device | str = "cpu",
) -> tuple[TaskBatch, Tensor, Tensor]:
    """Sample sinusoid regression tasks with the MAML paper's distributions (Finn et al. 2017).

    A ~ U[0.1, 5], b ~ U[0, π], x ~ U[-5, 5]. Returns ``(batch, amplitude, phase)`` with
    ``x [tasks, k_shot, 1]`` and ``y [tasks, k_shot, 1]``; ``n_query`` defaults to ``k_shot``.
    Derived in chapter 03, section 1.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1 (an empty support set cannot be adapted on), got {k_shot}")
    n_query = k_shot if n_query is None else n_query
    if n_query < 1:
        raise ValueError(f"n_query must be >= 1, got {n_query}")
    g = generator

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
        return torch.rand(shape, generator=g).mul_(hi - lo).add_(lo)

    amplitude = uniform((n_tasks,), *amplitude_range)
    phase = uniform((n_tasks,), *phase_range)
    x = uniform((n_tasks, k_shot + n_query, 1), *x_range)
    y = sinusoid(x, amplitude, phase)
    batch = TaskBatch(x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:])
    return batch.to(device), amplitude.to(device), phase.to(device)


# --------------------------------------------------------------------- N-way K-shot (chapter 02)

def sample_episodes(
    x: Tensor,
    y: Tensor,
    n_way: int,
    k_shot: int,
    n_query: int,
    n_tasks: int = 1,
    *,
    generator: torch.Generator | None = None,
    classes: Tensor | None = None,
) -> TaskBatch:
    """Sample N-way K-shot episodes from a labelled dataset.

    ``x [examples, *features]``, ``y [examples]`` integer labels. Each episode draws ``n_way``
    classes (from ``classes`` if given, e.g. the meta-train classes), relabels them 0..N-1 and
    draws ``k_shot`` support and ``n_query`` query examples per class, without overlap.
    Returns ``x_support [tasks, n_way*k_shot, *features]``, ``y_support [tasks, n_way*k_shot]``.
    Derived in chapter 02, section 4.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if n_way < 2 or k_shot < 1 or n_query < 1 or n_tasks < 1:
        raise ValueError(f"need n_way >= 2, k_shot >= 1, n_query >= 1, n_tasks >= 1; got "
                         f"n_way={n_way}, k_shot={k_shot}, n_query={n_query}, n_tasks={n_tasks}")
    pool = torch.unique(y) if classes is None else torch.as_tensor(classes)
    if len(pool) < n_way:
        raise ValueError(f"n_way={n_way} but only {len(pool)} classes are available; lower n_way")
    index_of = {int(c): torch.nonzero(y == c).flatten() for c in pool}
    need = k_shot + n_query
    short = {c: len(ix) for c, ix in index_of.items() if len(ix) < need}
    if short:
        raise ValueError(f"k_shot + n_query = {need} but classes {sorted(short)} have only "
                         f"{min(short.values())} examples; lower k_shot or n_query")
    xs, ys, xq, yq = [], [], [], []
    for _ in range(n_tasks):
        chosen = pool[permutation(len(pool), generator)[:n_way]]
        sx, sy, qx, qy = [], [], [], []
        for label, c in enumerate(chosen.tolist()):
            ix = index_of[c]
            pick = ix[permutation(len(ix), generator)[:need]]
            sx.append(x[pick[:k_shot]]); qx.append(x[pick[k_shot:]])
            sy.append(torch.full((k_shot,), label)); qy.append(torch.full((n_query,), label))
        xs.append(torch.cat(sx)); ys.append(torch.cat(sy)); xq.append(torch.cat(qx)); yq.append(torch.cat(qy))
    return TaskBatch(torch.stack(xs), torch.stack(ys), torch.stack(xq), torch.stack(yq))


# ------------------------------------------------------------ learner x item tasks (chapters 01, 05)

def learner_tasks(
    responses: Tensor,
    k_shot: int,
    learners: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    max_query: int | None = None,
) -> TaskBatch:
    """Turn a learner x item response matrix into one task per learner.

    ``responses [learners, items]`` holds 0/1 (or any real score) with NaN for a missing answer.
    For each selected learner, ``k_shot`` of their *answered* items (chosen at random) form the
    support set and all their other answered items (at most ``max_query``) the query set; missing
    answers are never used. ``x`` is the item index (``long``), ``y`` the response (``float``).
    Shapes: ``x_support [tasks, k_shot]``, ``x_query [tasks, n_query]`` padded to the longest query
    with ``query_mask`` marking real entries. Derived in chapter 01, section 2.
    """
    if not isinstance(responses, Tensor):
        responses = torch.as_tensor(responses)
    if responses.dim() != 2:
        raise ValueError(f"responses must be a [learners, items] matrix, got shape {tuple(responses.shape)}")
    if not responses.is_floating_point():
        responses = responses.float()
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1, got {k_shot}")
    rows = torch.arange(responses.shape[0]) if learners is None else torch.as_tensor(learners).long()
    if rows.numel() == 0:
        raise ValueError("no learners selected")
    answered = ~torch.isnan(responses[rows])
    counts = answered.sum(1)
    too_few = torch.nonzero(counts < k_shot + 1).flatten()
    if len(too_few):
        worst = int(rows[too_few[0]])
        raise ValueError(f"k_shot={k_shot} needs at least {k_shot + 1} answered items per learner (K for "
                         f"support, >= 1 for query), but learner {worst} has {int(counts[too_few[0]])}; "
                         f"{len(too_few)} learners are short. Lower k_shot or drop those learners.")
    # Random order of each learner's answered items: random keys, missing answers pushed last.
    keys = torch.rand(answered.shape, generator=generator)
    keys[~answered] = 2.0
    order = keys.argsort(dim=1)
    n_query = int((counts - k_shot).max())
    if max_query is not None:
        if max_query < 1:
            raise ValueError(f"max_query must be >= 1, got {max_query}")
        n_query = min(n_query, max_query)
    x_support = order[:, :k_shot]
    x_query = order[:, k_shot : k_shot + n_query]
    query_mask = torch.arange(n_query)[None, :] < (counts - k_shot)[:, None]
    scores = responses[rows]
    y_support = scores.gather(1, x_support)
    y_query = scores.gather(1, x_query).nan_to_num(0.0)  # padding slots; masked out
    return TaskBatch(x_support, y_support, x_query, y_query, query_mask=query_mask)


# ------------------------------------------------------------ fixed query sets and the leaky split (chapter 01)

__all__ += ["fixed_query_tasks", "split_by_interaction"]


def fixed_query_tasks(responses: Tensor, learners: Tensor, k_shots: list[int] | tuple[int, ...], n_query: int,
                      *, seed: int = 0) -> dict[int, TaskBatch]:
    """One `TaskBatch` per K for the same learners: a fixed query set and nested support sets.

    Each learner's answered items are shuffled once; the first ``n_query`` form 𝒟ᵢ^q, and the
    support set for K is the next K (so 𝒟ˢ for K=2 contains 𝒟ˢ for K=1). Comparing methods over K
    on the same query answers removes one source of noise. Missing answers are never used.
    Shapes: ``x_support [learners, K]``, ``x_query [learners, n_query]``. Derived in chapter 01,
    section 2.
    """
    if responses.dim() != 2:
        raise ValueError(f"responses must be [learners, items], got {tuple(responses.shape)}")
    if not k_shots or min(k_shots) < 1:
        raise ValueError(f"k_shots must be a non-empty list of positive ints, got {k_shots}")
    if n_query < 1:
        raise ValueError(f"n_query must be >= 1, got {n_query}")
    rows = responses[learners.long()]
    answered = ~torch.isnan(rows)
    need = max(k_shots) + n_query
    counts = answered.sum(1)
    if (counts < need).any():
        bad = int(torch.nonzero(counts < need)[0])
        raise ValueError(f"K = {max(k_shots)} plus n_query = {n_query} needs {need} answered items per "
                         f"learner, but learner {int(learners[bad])} has {int(counts[bad])}; lower K or "
                         "n_query, or drop that learner")
    keys = torch.rand(rows.shape, generator=torch.Generator().manual_seed(seed))
    keys[~answered] = 2.0  # missing answers sort last and are never reached
    order = keys.argsort(1)
    x_query = order[:, :n_query]
    y_query = rows.gather(1, x_query)
    out = {}
    for k_shot in k_shots:
        x_support = order[:, n_query:n_query + k_shot]
        out[k_shot] = TaskBatch(x_support, rows.gather(1, x_support), x_query, y_query)
    return out


def split_by_interaction(responses: Tensor, test_fraction: float = 0.2, *,
                         seed: int = 0) -> tuple[Tensor, Tensor]:
    """The split NOT to use for new learners: each answered cell goes to train or test at random.

    Returns boolean masks ``(train, test) [learners, items]``. Every learner lands on both sides,
    so a personalised model has already seen the "test" learners. Derived in chapter 01, section 2;
    what it costs is measured in section 5.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    answered = ~torch.isnan(responses)
    u = torch.rand(responses.shape, generator=torch.Generator().manual_seed(seed))
    test = answered & (u < test_fraction)
    return answered & ~test, test



# ------------------------------------------------------------ cross-fitting folds (chapter 09)

__all__ += ["learner_folds"]


def learner_folds(n_learners: int, n_folds: int, seed: int = 0) -> list[Tensor]:
    """``n_folds`` disjoint, sorted sets of learner indices covering 0..n_learners−1 (cross-fitting).

    Fold f holds every ``n_folds``-th learner of a seeded `permutation`, so the folds differ in size
    by at most one. Training on the other folds and predicting fold f, for every f, scores every
    learner once as a *held-out* learner: more held-out learners than one split gives, which a
    per-group audit with a small group needs. Derived in chapter 09, section 3.
    """
    if not 2 <= n_folds <= n_learners:
        raise ValueError(f"need 2 <= n_folds <= n_learners, got n_folds={n_folds}, n_learners={n_learners}")
    perm = permutation(n_learners, torch.Generator().manual_seed(seed))
    return [perm[f::n_folds].sort().values for f in range(n_folds)]


# ------------------------------------------------------------------ scoring a batch's query answers (chapter 09)

__all__ += ["query_answers"]


def query_answers(batch: TaskBatch, prob: Tensor, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real query answers of a batch, flat: (answers, P(correct) clipped to [eps, 1 − eps], task index).

    ``prob [tasks, n_query]``; padded query slots (``query_mask`` False) are left out. What the
    learner-bootstrap metrics take. Used by chapter 09's studies.
    """
    mask = batch.query_mask if batch.query_mask is not None else torch.ones_like(batch.y_query, dtype=torch.bool)
    task = torch.arange(batch.n_tasks)[:, None].expand_as(mask)
    return (batch.y_query[mask].numpy(), prob.detach()[mask].clamp(eps, 1 - eps).numpy().astype(float),
            task[mask].numpy())


# ------------------------------------------------------------ a learner as a 2-way episode (chapter 03, section 8)

__all__ += ["episode_learners", "learner_episodes"]


def episode_learners(responses: Tensor, k_shot: int) -> Tensor:
    """The learners (row indices) with at least ``k_shot`` right, ``k_shot`` wrong and one more answer.

    Those are the learners `learner_episodes` can turn into a 2-way K-shot episode. ``responses
    [learners, items]`` 1/0 with NaN for missing -> a sorted LongTensor. Chapter 03, section 8.
    """
    if isinstance(k_shot, bool) or not isinstance(k_shot, int) or k_shot < 1:
        raise ValueError(f"k_shot must be an integer >= 1 (answers per class), got {k_shot!r}")
    right, wrong = (responses == 1).sum(1), (responses == 0).sum(1)
    return torch.nonzero((right >= k_shot) & (wrong >= k_shot) & (right + wrong > 2 * k_shot)).flatten()


def learner_episodes(responses: Tensor, k_shots: tuple[int, ...] | list[int], learners: Tensor, *,
                     seed: int = 0) -> dict[int, TaskBatch]:
    """One 2-way episode per learner and K: K right and K wrong answers as support, a fixed query.

    A learner's task is "which items will I get right?": class 1 = answered right, class 0 =
    answered wrong. Each learner's answered items are shuffled once (``seed``); the support for K is
    the first K wrong and the first K right items in that order (nested over K), and the query is
    every other answered item, the same for every K (the support of the largest K is held out).
    ``x`` is the item index (``long``; map it to item features with ``features[x]``), ``y`` the class.
    Shapes: ``x_support [learners, 2K]`` (K wrong then K right), ``x_query [learners, n_query]`` padded,
    with ``query_mask``. A learner with fewer than max(K) answers of a class is an error (select
    them with `episode_learners`). The query's mix of right and wrong is the learner's own, while
    the support is balanced by construction, as in every N-way K-shot episode. Chapter 03, section 8.
    """
    if not isinstance(responses, Tensor) or responses.dim() != 2:
        raise ValueError("responses must be a [learners, items] tensor of 1/0 with NaN for missing")
    if not k_shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in k_shots):
        raise ValueError(f"k_shots must be a non-empty list of integers >= 1, got {k_shots!r}")
    learners = torch.as_tensor(learners).long()
    if learners.numel() == 0:
        raise ValueError("no learners selected")
    k_max = max(k_shots)
    ok = torch.isin(learners, episode_learners(responses, k_max))
    if not ok.all():
        bad = int(learners[~ok][0])
        r = responses[bad]
        raise ValueError(f"K = {k_max} per class needs at least {k_max} right and {k_max} wrong answers plus one "
                         f"to predict, but learner {bad} has {int((r == 1).sum())} right and {int((r == 0).sum())} "
                         f"wrong; {int((~ok).sum())} learners are short. Lower K or keep only "
                         "episode_learners(responses, K)")
    rows = responses[learners]
    answered = ~torch.isnan(rows)
    keys = torch.rand(rows.shape, generator=torch.Generator().manual_seed(seed))

    def first(where: Tensor) -> Tensor:  # [learners, k_max]: item indices in shuffled order
        return torch.where(where, keys, 2.0).argsort(1)[:, :k_max]

    wrong, right = first(rows == 0), first(rows == 1)
    held = torch.zeros_like(answered).scatter_(1, torch.cat([wrong, right], 1), True)
    is_query = answered & ~held
    counts = is_query.sum(1)
    x_query = torch.where(is_query, keys, 2.0).argsort(1)[:, :int(counts.max())]
    query_mask = torch.arange(x_query.shape[1])[None, :] < counts[:, None]
    y_query = rows.gather(1, x_query).nan_to_num(0.0).long()
    out = {}
    for k in k_shots:
        x_support = torch.cat([wrong[:, :k], right[:, :k]], 1)
        y_support = torch.cat([torch.zeros(len(learners), k), torch.ones(len(learners), k)], 1).long()
        out[k] = TaskBatch(x_support, y_support, x_query, y_query, query_mask=query_mask)
    return out
