"""ProtoMAML: MAML whose output layer starts, for every task, at the prototypical classifier.

Derived in chapter 03, section 8 (the bridge from chapter 02's prototypes to MAML), after
Triantafillou et al. 2020 ("Meta-Dataset: A Dataset of Datasets for Learning to Learn from Few Examples", its "Proto-MAML"). Chapter 02, section 5 showed
that a Prototypical Network with squared Euclidean distance is a linear classifier on the
embedding z = f_θ(x):

    −‖z − c_k‖² = −‖z‖² + 2 c_kᵀz − ‖c_k‖²,    so   W_k = 2 c_k,   b_k = −‖c_k‖²

(the −‖z‖² term is the same for every class and cancels in the softmax). ProtoMAML runs MAML on the
network "embedding f_θ, then a linear head (W, b)" where the head is not meta-learned: for every task
i it is *initialised* from that task's support prototypes c_k = mean of f_θ(x) over the support
examples of class k, and then the inner loop adapts embedding and head together,

    φᵢ⁽⁰⁾ = (θ, W(θ; 𝒟ᵢˢ), b(θ; 𝒟ᵢˢ)),    φᵢ⁽ˢ⁺¹⁾ = φᵢ⁽ˢ⁾ − α ∇_φ L(φᵢ⁽ˢ⁾; 𝒟ᵢˢ),

and the outer loop minimises the query loss ℒ(θ) = (1/T) Σᵢ L(φᵢ⁽ⁿ⁾; 𝒟ᵢ^q). With 0 inner steps the
model *is* the ProtoNet (same softmax, same loss). The head's initialisation depends on θ, so the
outer gradient flows through it: through the prototypes into the embedding.

Gradients through the initialisation: ``first_order=False`` differentiates through everything
(inner Hessian terms included). ``first_order=True`` is fo-Proto-MAML, the variant Triantafillou
et al. train: the inner gradients are treated as constants (as in FOMAML), so φ⁽ⁿ⁾ = φ⁽⁰⁾ − α Σ
(constants) and the outer gradient reaches W(θ), b(θ) — and through them the prototypes and θ —
with an identity Jacobian. ``through_init=False`` detaches the initial head altogether (the
prototypes then only set a starting point), an ablation.

The per-task function is the MAML core of `course_lib.algorithms.maml` (`inner_adapt`, on
`torch.func`), vmapped over tasks; nothing is cloned and nothing loops over tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from course_lib.algorithms.functional import Params, adam, batch_args, cross_entropy, fit_loop, task_loss
from course_lib.algorithms.maml import check_alpha, check_steps, inner_adapt
from course_lib.algorithms.protonet import check_coverage, check_labels, class_prototypes
from course_lib.tasks import TaskBatch

__all__ = ["PrototypeHeadNet", "prototype_head", "protomaml_loss", "protomaml_adapt", "ProtoMAML",
           "check_episodes"]

HEAD = ("head_weight", "head_bias")


class PrototypeHeadNet(nn.Module):
    """f(x; θ, W, b) = f_θ(x) Wᵀ + b: an embedding with a linear head that holds no parameters.

    The head's ``head_weight [n_way, d]`` and ``head_bias [n_way]`` are *buffers* set per task (from
    the prototypes by `prototype_head`, then adapted), so ``named_parameters()`` is the embedding's θ
    alone. x ``[n, *features]`` -> logits ``[n, n_way]``. Derived in chapter 03, section 8.
    """

    def __init__(self, embedding: nn.Module) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Module):
            raise ValueError(f"embedding must be a torch.nn.Module, got {type(embedding).__name__}")
        self.embedding = embedding
        self.register_buffer("head_weight", torch.zeros(0, 0), persistent=False)
        self.register_buffer("head_bias", torch.zeros(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.head_weight.numel() == 0:
            raise ValueError("the prototype head is not set: call the network through functional_call with "
                             "head_weight and head_bias (see prototype_head), or use ProtoMAML")
        return F.linear(self.embedding(x), self.head_weight, self.head_bias)


def _embedding_params(theta: Params) -> Params:
    """θ's entries for the embedding submodule, with the ``embedding.`` prefix removed."""
    return {name.removeprefix("embedding."): v for name, v in theta.items() if name.startswith("embedding.")}


def prototype_head(model: PrototypeHeadNet, theta: Params, x_support: Tensor, y_support: Tensor,
                   mask: Tensor | None, n_way: int) -> Params:
    """The head W_k = 2 c_k, b_k = −‖c_k‖² from one task's support prototypes c_k (trusted inputs).

    x_support ``[n_support, *features]``, y_support ``[n_support]`` labels 0..n_way−1, mask
    ``[n_support]`` bool or None -> ``{"head_weight": [n_way, d], "head_bias": [n_way]}``,
    differentiable in θ. Works under ``vmap`` (no data-dependent branches). Derived in chapter 03,
    section 8 (the linear form is chapter 02, section 5).
    """
    z = functional_call(model.embedding, _embedding_params(theta), (x_support,))
    c = class_prototypes(z[None], y_support[None], n_way, None if mask is None else mask[None])[0]
    return {"head_weight": 2.0 * c, "head_bias": -c.pow(2).sum(-1)}


def _task_init(model: PrototypeHeadNet, theta: Params, xs: Tensor, ys: Tensor, ms: Tensor, n_way: int,
               through_init: bool) -> Params:
    head = prototype_head(model, theta, xs, ys, ms, n_way)
    if not through_init:
        head = {name: v.detach() for name, v in head.items()}
    return {**theta, **head}


def protomaml_loss(model: PrototypeHeadNet, theta: Params, batch: TaskBatch, *, n_way: int, alpha: float,
                   steps: int, first_order: bool = False, through_init: bool = True,
                   adapt: list[str] | None = None) -> Tensor:
    """The ProtoMAML meta-objective ℒ(θ): mean over tasks of the query cross-entropy after adaptation.

    Per task: head from the support prototypes, ``steps`` inner steps of size α on the support
    cross-entropy (all parameters, or the name prefixes in ``adapt``, e.g. ``["head_"]``), query
    loss of φ. Vmapped over the batch's task dimension; differentiable in θ. Labels are integers
    0..n_way−1, every class present in every support set (trusted here; `ProtoMAML` validates).
    Derived in chapter 03, section 8.
    """
    xs, ys, ms, xq, yq, mq = batch_args(batch)

    def one_task(theta_: Params, xs: Tensor, ys: Tensor, ms: Tensor, xq: Tensor, yq: Tensor, mq: Tensor) -> Tensor:
        phi0 = _task_init(model, theta_, xs, ys, ms, n_way, through_init)
        phi = inner_adapt(model, phi0, xs, ys, ms, loss_fn=cross_entropy, alpha=alpha, steps=steps,
                          first_order=first_order, adapt=adapt)
        return task_loss(model, phi, cross_entropy, xq, yq, mq)

    per_task = vmap(one_task, in_dims=(None, 0, 0, 0, 0, 0, 0), randomness="different")(
        theta, xs, ys, ms, xq, yq, mq)
    return per_task.mean()


def protomaml_adapt(model: PrototypeHeadNet, theta: Params, batch: TaskBatch, *, n_way: int, alpha: float,
                    steps: int, adapt: list[str] | None = None) -> Params:
    """φᵢ for every task of ``batch`` (prototype head, then ``steps`` first-order inner steps), detached.

    Returns φ with a leading task dimension (embedding and head entries ``[tasks, ...]``); predict
    with `course_lib.algorithms.maml.predict_batch`. Derived in chapter 03, section 8.
    """
    theta = {name: v.detach() for name, v in theta.items()}
    xs, ys, ms, *_ = batch_args(batch)

    def one(xs_: Tensor, ys_: Tensor, ms_: Tensor) -> Params:
        phi0 = _task_init(model, theta, xs_, ys_, ms_, n_way, through_init=False)
        return inner_adapt(model, phi0, xs_, ys_, ms_, loss_fn=cross_entropy, alpha=alpha, steps=steps,
                           first_order=True, adapt=adapt)

    phi = vmap(one, randomness="different")(xs, ys, ms)
    return {name: v.detach() for name, v in phi.items()}


def check_episodes(batch: TaskBatch, n_way: int | None = None) -> int:
    """Validate a batch of classification episodes; return n_way (1 + the largest support label if None).

    Labels must be integers 0..n_way−1, every class must have a real support example in every
    task, and the features must be finite. Raises ValueError saying what to change. Chapter 02/03.
    """
    if not isinstance(batch, TaskBatch):
        raise ValueError(f"expected a course_lib.tasks.TaskBatch, got {type(batch).__name__}")
    for name in ("y_support", "y_query"):
        t = getattr(batch, name)
        if t.is_floating_point() or t.dtype == torch.bool or t.dim() != 2:
            raise ValueError(f"{name} must be integer class labels [tasks, examples], got {t.dtype} "
                             f"{tuple(t.shape)}; use sample_episodes, learner_episodes or .long()")
    for name in ("x_support", "x_query"):
        t = getattr(batch, name)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{name} contains an infinite value; rescale or drop those features")
    n_way = check_labels(batch.y_support, n_way, "y_support")
    check_labels(batch.y_query, n_way, "y_query")
    check_coverage(batch.y_support, n_way, batch.support_mask)
    return n_way


class ProtoMAML:
    """ProtoMAML around an embedding ``nn.Module`` ``[n, *features] -> [n, d]`` (Triantafillou et al. 2020).

    ``alpha``: inner step (> 0); ``steps``: inner steps (0 gives exactly the ProtoNet);
    ``first_order``: fo-Proto-MAML (the paper's variant; gradients still flow through the prototype
    initialisation, see the module docstring); ``through_init=False`` detaches the initial head;
    ``adapt``: name prefixes adapted in the inner loop (None = embedding and head, as in the paper;
    ``["head_"]`` = the head only). θ is the embedding's parameters, trained in place by ``fit``.
    Derived in chapter 03, section 8.
    """

    def __init__(self, embedding: nn.Module, alpha: float = 0.1, steps: int = 5, first_order: bool = False,
                 through_init: bool = True, adapt: list[str] | None = None) -> None:
        self.model = PrototypeHeadNet(embedding)
        self.alpha = check_alpha(alpha)
        self.steps = check_steps(steps, minimum=0)
        self.first_order = bool(first_order)
        self.through_init = bool(through_init)
        self.adapt_prefixes = adapt

    @property
    def embedding(self) -> nn.Module:
        return self.model.embedding

    @property
    def theta(self) -> dict[str, nn.Parameter]:
        """θ: the embedding's parameters, named as in the `PrototypeHeadNet` (``embedding.*``)."""
        return dict(self.model.named_parameters())

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def meta_loss(self, batch: TaskBatch, n_way: int | None = None) -> Tensor:
        """ℒ(θ) on a validated batch of episodes (differentiable w.r.t. θ)."""
        n_way = check_episodes(batch, n_way)
        return protomaml_loss(self.model, self.theta, batch.to(self.device), n_way=n_way, alpha=self.alpha,
                              steps=self.steps, first_order=self.first_order, through_init=self.through_init,
                              adapt=self.adapt_prefixes)

    def adapt_batch(self, batch: TaskBatch, n_way: int | None = None, steps: int | None = None) -> Params:
        """φᵢ for every task (detached; leading task dimension), see `protomaml_adapt`."""
        n_way = check_episodes(batch, n_way)
        return protomaml_adapt(self.model, self.theta, batch.to(self.device), n_way=n_way, alpha=self.alpha,
                               steps=self.steps if steps is None else check_steps(steps), adapt=self.adapt_prefixes)

    def logits(self, batch: TaskBatch, n_way: int | None = None, steps: int | None = None) -> Tensor:
        """Query logits after adaptation, ``[tasks, n_query, n_way]`` (detached)."""
        phi = self.adapt_batch(batch, n_way, steps)
        x_query = batch.x_query.to(self.device)
        return vmap(lambda p, x: functional_call(self.model, p, (x,)))(phi, x_query).detach()

    def fit(self, sample: Callable[[torch.Generator], TaskBatch], iterations: int, beta: float = 1e-3,
            seed: int = 0, progress: bool = True, log_every: int = 50) -> dict[str, list]:
        """Meta-train θ with Adam (outer step β) on ``sample(generator)`` batches; returns the loss history.

        The first batch is validated (`check_episodes`) and fixes n_way; later batches are trusted.
        """
        beta = check_alpha(beta, "beta (the outer step size)")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the embedding has no trainable parameters; nothing to meta-train")
        opt = adam(params, beta)
        n_way: list[int] = []

        def step(batch: TaskBatch) -> Tensor:
            if not n_way:
                n_way.append(check_episodes(batch))
            loss = protomaml_loss(self.model, self.theta, batch.to(self.device), n_way=n_way[0], alpha=self.alpha,
                                  steps=self.steps, first_order=self.first_order,
                                  through_init=self.through_init, adapt=self.adapt_prefixes)
            if not torch.isfinite(loss):
                raise ValueError(f"the meta-loss became {float(loss)}; lower alpha (inner step, now {self.alpha}) "
                                 f"or beta (outer step, now {beta})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        name = ("fo-" if self.first_order else "") + "ProtoMAML"
        return fit_loop(step, sample, iterations, seed, progress, desc=name, log_every=log_every)
