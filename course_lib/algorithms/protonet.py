"""Prototypical Networks (Snell, Swersky, Zemel 2017): classify by the distance to class means.

Derived in chapter 02 (Distance metrics and metric-based meta-learning), sections 3-6. An
embedding f_θ maps every example to a vector; the prototype of class c in task i is the mean
embedded support example of that class,

    μ_c = (1 / |S_c|) Σ_{(x, y) ∈ 𝒟ᵢˢ, y = c} f_θ(x),

and a query x gets the logits −d(f_θ(x), μ_c) over the N classes (softmax gives p(y = c | x)).
Meta-training minimises the query cross-entropy over episodes with Adam (outer step β). Nothing
adapts per task except the prototypes, so serving a new learner or class is one forward pass.

    from course_lib.algorithms.protonet import ProtoNet
    net = ProtoNet(embedding)                      # any nn.Module: [n, *features] -> [n, d]
    hist = net.fit(lambda g: sample_episodes(x, y, 5, 1, 15, 16, generator=g), 2000)
    acc = net.accuracy(test_batch)

Everything is vectorised over the tasks of a batch: the embedding runs once on all tasks'
examples (task and example dimensions flattened together), prototypes are one batched matmul.
Note that an embedding with BatchNorm in training mode then pools its statistics over the whole
meta-batch (as in Snell et al.'s code), so per-task and batched results differ for such models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.algorithms.functional import fit_loop, maybe_compile
from course_lib.distances import get_distance
from course_lib.tasks import TaskBatch

__all__ = ["ProtoNet", "prototype_linear_classifier", "class_prototypes", "check_labels", "check_coverage"]


def class_prototypes(z_support: Tensor, y_support: Tensor, n_way: int, mask: Tensor | None = None) -> Tensor:
    """Mean embedded support example per class (unchecked; see ``ProtoNet.prototypes``).

    z_support ``[tasks, n_support, d]``, y_support ``[tasks, n_support]`` (labels 0..n_way−1), mask
    ``[tasks, n_support]``
    bool or None -> prototypes ``[tasks, n_way, d]``. A class with no (unmasked) support example
    gets the zero vector. Derived in chapter 02, section 3.
    """
    onehot = F.one_hot(y_support.long(), n_way).to(z_support.dtype)  # [tasks, n_support, n_way]
    if mask is not None:
        onehot = onehot * mask[..., None].to(z_support.dtype)
    counts = onehot.sum(1)  # [tasks, n_way]
    return (onehot.transpose(1, 2) @ z_support) / counts.clamp_min(1.0)[..., None]


def prototype_linear_classifier(prototypes: Tensor) -> tuple[Tensor, Tensor]:
    """The linear classifier that squared-Euclidean nearest-prototype classification equals.

    −‖z − μ_c‖² = −‖z‖² + 2μ_c·z − ‖μ_c‖², and −‖z‖² is the same for every class, so the softmax
    and the argmax only see the linear part w_c·z + b_c with w_c = 2μ_c and b_c = −‖μ_c‖².
    prototypes ``[..., n_way, d]`` -> ``(W [..., n_way, d], b [..., n_way])``; logits = z Wᵀ + b.
    Derived in chapter 02, section 5 (Snell et al. 2017, section 2.3).
    """
    if not isinstance(prototypes, Tensor) or prototypes.dim() < 2:
        raise ValueError("prototypes must be a tensor of shape [..., n_way, d]")
    if torch.isnan(prototypes).any():
        raise ValueError("prototypes contain NaN")
    return 2.0 * prototypes, -prototypes.pow(2).sum(-1)


def _masked_task_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tasks of each task's mean over its real entries. values, mask ``[tasks, n]``."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return ((values * m).sum(1) / m.sum(1).clamp_min(1.0)).mean()


def check_coverage(y_support: Tensor, n_way: int, mask: Tensor | None = None) -> None:
    """Every class 0..n_way−1 has at least one (unmasked) support example in every task.

    ``y_support``: ``[tasks, examples]`` labels; ``mask``: ``[tasks, examples]`` (1 = a real example).
    Chapter 02, section 3 (a prototype is a mean over the class's support examples).
    """
    onehot = F.one_hot(y_support.long(), n_way)
    if mask is not None:
        onehot = onehot * mask.to(onehot.device)[..., None]
    empty = (onehot.sum(1) == 0).nonzero()
    if len(empty):
        t, c = (int(v) for v in empty[0])
        raise ValueError(f"class {c} has no support example in task {t} (n_way={n_way}); every class "
                         "needs at least one (unmasked) support example, or lower n_way")


def check_labels(y: Tensor, n_way: int | None, name: str) -> int:
    """Integer labels in 0..n_way−1 (``n_way=None``: inferred as the largest label + 1); returns n_way.

    ``name`` is the argument's name in the error message. Chapter 02, section 3.
    """
    if y.is_floating_point():
        raise ValueError(f"{name} must hold integer class labels, got {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise ValueError(f"{name} has a negative label {lo}; labels must be 0..n_way−1 within each task")
    if n_way is None:
        return hi + 1
    if n_way < 2:
        raise ValueError(f"n_way must be >= 2, got {n_way}")
    if hi >= n_way:
        raise ValueError(f"{name} has label {hi} but n_way={n_way}; labels must be 0..n_way−1 "
                         "(relabel each episode's classes, as sample_episodes does)")
    return n_way


class ProtoNet:
    """A Prototypical Network around any embedding ``nn.Module`` ``[n, *features] -> [n, d]``.

    ``distance``: ``"squared_euclidean"`` (the paper's choice and the default), ``"euclidean"``,
    ``"cosine"``, or a callable ``(a [..., n, d], b [..., m, d]) -> [..., n, m]`` (for example
    ``get_distance("mahalanobis", cov=S)``). Logits are −distance. Derived in chapter 02.
    """

    def __init__(self, embedding: nn.Module, distance: str | Callable[[Tensor, Tensor], Tensor] = "squared_euclidean"):
        if not isinstance(embedding, nn.Module):
            raise ValueError(f"embedding must be a torch.nn.Module, got {type(embedding).__name__}")
        self.embedding = embedding
        self.distance_name = distance if isinstance(distance, str) else getattr(distance, "__name__", "custom")
        # Inside the training loop use the unchecked kernel: inputs are validated once per batch.
        # (Raises on unknown names and on a Mahalanobis distance without its Σ.)
        self._distance = get_distance(distance, validate=False)

    # ------------------------------------------------------------------ parameters and device
    @property
    def theta(self) -> dict[str, nn.Parameter]:
        """The meta-parameters θ: the embedding's parameters, by name."""
        return dict(self.embedding.named_parameters())

    @property
    def device(self) -> torch.device:
        """The device of the embedding's parameters (CPU for a parameter-free embedding)."""
        p = next(self.embedding.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # ---------------------------------------------------------------------------- forward
    def embed(self, x: Tensor) -> Tensor:
        """Embed every example of every task at once: x ``[tasks, n, *features]`` -> ``[tasks, n, d]``."""
        tasks, n = x.shape[:2]
        z = self.embedding(x.reshape(tasks * n, *x.shape[2:]))
        if z.dim() != 2 or z.shape[0] != tasks * n:
            raise ValueError(f"the embedding must map [n, *features] to [n, d]; it returned {tuple(z.shape)} "
                             f"for {tasks * n} examples (add nn.Flatten() at its end?)")
        return z.reshape(tasks, n, z.shape[-1])

    def prototypes(self, z_support: Tensor, y_support: Tensor, n_way: int | None = None,
                   mask: Tensor | None = None) -> Tensor:
        """Class means of embedded support examples: z ``[tasks, n_support, d]``, y ``[tasks, n_support]``
        -> ``[tasks, n_way, d]`` (n_support = n_way · k_shot for sampled episodes).

        ``mask [tasks, n_support]`` (bool, True = real) drops padding slots. Every class 0..n_way−1 must
        have at least one real support example in every task. Derived in chapter 02, section 3.
        """
        if z_support.dim() != 3:
            raise ValueError(f"z_support must be [tasks, n_support, d], got {tuple(z_support.shape)}")
        if tuple(y_support.shape) != tuple(z_support.shape[:2]):
            raise ValueError(f"y_support must be [tasks, n_support] = {tuple(z_support.shape[:2])}, got {tuple(y_support.shape)}")
        if torch.isnan(z_support).any():
            raise ValueError("z_support contains NaN; check the inputs (missing values?) and the embedding")
        n_way = check_labels(y_support, n_way, "y_support")
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(y_support.shape)):
            raise ValueError(f"mask must be a bool tensor of shape {tuple(y_support.shape)}, got {mask.dtype} {tuple(mask.shape)}")
        check_coverage(y_support, n_way, mask)
        return class_prototypes(z_support, y_support, n_way, mask)

    def logits(self, batch: TaskBatch, n_way: int | None = None) -> Tensor:
        """−distance from each query embedding to each prototype: ``[tasks, n_query, n_way]``.

        ``n_way`` defaults to 1 + the largest support label. Derived in chapter 02, section 3.
        """
        batch = self._check_batch(batch)
        n_way = check_labels(batch.y_support, n_way, "y_support")
        check_coverage(batch.y_support, n_way, batch.support_mask)
        return self._logits(batch.x_support, batch.y_support, batch.support_mask, batch.x_query, n_way)

    def loss(self, batch: TaskBatch, n_way: int | None = None) -> Tensor:
        """Query cross-entropy, averaged over each task's real queries, then over tasks (a scalar)."""
        batch = self._check_batch(batch)
        n_way = check_labels(batch.y_support, n_way, "y_support")
        check_labels(batch.y_query, n_way, "y_query")
        logits = self.logits(batch, n_way)
        return self._loss_from_logits(logits, batch.y_query, batch.query_mask)

    @torch.no_grad()
    def accuracy(self, batch: TaskBatch, n_way: int | None = None, per_task: bool = False,
                 chunk: int | None = None) -> Tensor:
        """Fraction of real queries classified correctly: mean over tasks, or ``[tasks]`` with ``per_task``.

        ``chunk`` evaluates at most that many tasks per forward pass (bounds memory for large
        test sets, e.g. 600 episodes on a 2 GB Binder). Derived in chapter 02, section 4.
        """
        batch = self._check_batch(batch)
        n_way = check_labels(batch.y_support, n_way, "y_support")
        check_labels(batch.y_query, n_way, "y_query")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 tasks, got {chunk}")
        step = chunk or batch.n_tasks
        fields = ("x_support", "y_support", "x_query", "y_query", "support_mask", "query_mask")
        scores = []
        for start in range(0, batch.n_tasks, step):
            part = TaskBatch(*(None if getattr(batch, f) is None else getattr(batch, f)[start:start + step]
                               for f in fields))
            check_coverage(part.y_support, n_way, part.support_mask)
            logits = self._logits(part.x_support, part.y_support, part.support_mask, part.x_query, n_way)
            correct = (logits.argmax(-1) == part.y_query.long()).to(torch.float32)
            if part.query_mask is None:
                scores.append(correct.mean(1))
            else:
                m = part.query_mask.to(torch.float32)
                scores.append((correct * m).sum(1) / m.sum(1))
        acc = torch.cat(scores)
        return acc if per_task else acc.mean()

    # ---------------------------------------------------------------------------- training
    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int, beta: float = 1e-3,
            seed: int = 0, progress: bool = True, compile: bool = False, log_every: int = 10) -> dict[str, list]:
        """Episodic meta-training with Adam (step β) on ``sample(generator)`` for ``iterations`` steps.

        ``sample`` draws a TaskBatch from a seeded CPU ``torch.Generator`` (so runs are repeatable);
        batches move to the embedding's device. The first batch is fully validated; later ones
        are trusted and must have the same n_way. Returns ``{"iteration", "loss", "accuracy"}``:
        means over windows of ``log_every`` iterations, from the shared loop
        `course_lib.algorithms.functional.fit_loop`. ``compile=True`` wraps the loss computation in
        ``torch.compile`` (falling back to eager, with a warning, when compilation is not
        available). Derived in chapter 02, section 4.
        """
        if not beta > 0:
            raise ValueError(f"beta (the outer step size) must be > 0, got {beta}")
        params = [p for p in self.embedding.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the embedding has no trainable parameters; nothing to meta-train")
        opt = torch.optim.Adam(params, lr=beta)
        loss_and_correct = maybe_compile(self._loss_and_correct, compile)  # eager fallback
        n_way: list[int] = []  # fixed by the first (validated) batch

        def step(batch: TaskBatch) -> Tensor:
            if not n_way:
                batch = self._check_batch(batch)
                n_way.append(check_labels(batch.y_support, None, "y_support"))
                check_labels(batch.y_query, n_way[0], "y_query")
                check_coverage(batch.y_support, n_way[0], batch.support_mask)
            else:
                batch = batch.to(self.device)
            loss, acc = loss_and_correct(batch.x_support, batch.y_support, batch.support_mask,
                                         batch.x_query, batch.y_query, batch.query_mask, n_way[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return torch.stack([loss.detach(), acc.detach()])

        self.embedding.train()
        try:
            return fit_loop(step, sample, iterations, seed, progress, desc=f"ProtoNet ({self.distance_name})",
                            log_every=log_every, metrics=("loss", "accuracy"))
        finally:
            self.embedding.eval()

    # ---------------------------------------------------------------- internals (trusted inputs)
    def _logits(self, x_s: Tensor, y_s: Tensor, mask_s: Tensor | None, x_q: Tensor, n_way: int) -> Tensor:
        n_support = x_s.shape[1]
        # One embedding call for the support and query examples of every task.
        z = self.embed(torch.cat([x_s, x_q], dim=1))
        z_s, z_q = z[:, :n_support], z[:, n_support:]
        protos = class_prototypes(z_s, y_s, n_way, mask_s)
        return -self._distance(z_q, protos)

    @staticmethod
    def _loss_from_logits(logits: Tensor, y_q: Tensor, mask_q: Tensor | None) -> Tensor:
        ce = F.cross_entropy(logits.flatten(0, 1), y_q.flatten().long(), reduction="none").view(y_q.shape)
        return _masked_task_mean(ce, mask_q)

    def _loss_and_correct(self, x_s, y_s, mask_s, x_q, y_q, mask_q, n_way: int) -> tuple[Tensor, Tensor]:
        logits = self._logits(x_s, y_s, mask_s, x_q, n_way)
        loss = self._loss_from_logits(logits, y_q, mask_q)
        correct = (logits.detach().argmax(-1) == y_q.long()).to(logits.dtype)
        return loss, _masked_task_mean(correct, mask_q)

    def _check_batch(self, batch: TaskBatch) -> TaskBatch:
        if not isinstance(batch, TaskBatch):
            raise ValueError(f"expected a course_lib.tasks.TaskBatch, got {type(batch).__name__}")
        for name in ("y_support", "y_query"):
            t = getattr(batch, name)
            if t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class labels 0..n_way−1, got dtype {t.dtype}; "
                                 "use sample_episodes or .long()")
            if t.dim() != 2:
                raise ValueError(f"{name} must be [tasks, examples] class labels, got shape {tuple(t.shape)}")
        return batch.to(self.device)
