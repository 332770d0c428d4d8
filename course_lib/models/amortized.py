"""One-pass students of a gradient-adapted teacher: personalise a learner without gradient steps.

Derived in chapter 10 (Real-time personalization), sections 2-3.

The teacher (chapter 05's MAML on `MetaIRT`) personalises learner i by ``steps`` gradient steps on
their answers 𝒟ᵢˢ, φᵢ = θ − α ∇L(θ; 𝒟ᵢˢ) (repeated), and then predicts every item,
pᵢⱼ = σ(aⱼ · φᵢ + dⱼ). Its first step is a *mean over answers* of a function of (item, answer):

    ∇_ability L(θ; 𝒟ᵢˢ) = −(1/K) Σ_{(j, y)∈𝒟ᵢˢ} aⱼ (y − σ(aⱼ · θ + dⱼ)),

so a network that embeds each answer (j, y), averages the embeddings and maps the mean through a
small MLP can represent it exactly and approximate the later steps. That is the `AnswerSetEncoder`
(a DeepSets encoder). Two students use it, both trained by distillation on the teacher's adapted
soft predictions (`distillation_loss`):

* `AmortizedAdapter`: encoder → MLP → the personal parameters φᵢ (the ability), then the IRT head
  aⱼ · φᵢ + dⱼ (item parameters initialised from the teacher);
* `SmallStudent`: a narrower encoder → one hidden layer → logits of every item directly.

Either answers a new learner's update in one forward pass. `GradientTeacher` wraps the teacher
(one `MetaIRT` state per trained K, as chapter 05 trains them) for prediction, serving and timing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AnswerSetEncoder", "AmortizedAdapter", "SmallStudent", "GradientTeacher", "STUDENTS",
           "distillation_loss", "check_answers", "build_student", "sample_answer_sets", "distill"]


def check_answers(items: Tensor, answers: Tensor, mask: Tensor | None, n_items: int) -> Tensor:
    """Validate a padded batch of answers; return the mask as float ``[B, n]`` (1 = real answer).

    ``items [B, n]`` long in 0..n_items−1, ``answers [B, n]`` 0/1, ``mask [B, n]`` bool or 0/1 (None:
    every slot is real). Raises ``ValueError`` saying what is wrong.
    """
    if items.dim() != 2 or answers.shape != items.shape:
        raise ValueError(f"items and answers must both be [learners, answers]; got {tuple(items.shape)} and "
                         f"{tuple(answers.shape)}")
    if items.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"items must hold item indices (an integer tensor), got {items.dtype}")
    mask = torch.ones(items.shape) if mask is None else mask.float()
    if mask.shape != items.shape:
        raise ValueError(f"mask must have the shape of items {tuple(items.shape)}, got {tuple(mask.shape)}")
    real = mask > 0
    if real.any() and (items[real].min() < 0 or items[real].max() >= n_items):
        raise ValueError(f"item indices must lie in 0..{n_items - 1}; got {items[real].min()}..{items[real].max()}")
    if real.any() and not ((answers[real] == 0) | (answers[real] == 1)).all():
        raise ValueError("answers must be 0 (wrong) or 1 (correct)")
    return mask


class AnswerSetEncoder(nn.Module):
    """Mean of per-answer embeddings e[(item, answer)] plus log(1 + K): ``[B, n] → [B, width + 1]``.

    Order-invariant and defined for any number of answers, zero included (then the mean is 0).
    Inputs: ``items [B, n]`` long, ``answers [B, n]`` float 0/1, ``mask [B, n]`` float (1 = real).
    Derived in chapter 10, section 3.
    """

    def __init__(self, n_items: int, width: int) -> None:
        super().__init__()
        self.n_items, self.width = n_items, width
        self.embed = nn.Embedding(2 * n_items, width)
        nn.init.normal_(self.embed.weight, std=0.1)

    def forward(self, items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        e = self.embed(2 * items + answers.long()) * mask.unsqueeze(-1)      # [B, n, width]
        count = mask.sum(1, keepdim=True)                                     # [B, 1]
        return torch.cat([e.sum(1) / count.clamp_min(1.0), torch.log1p(count)], dim=-1)


class AmortizedAdapter(nn.Module):
    """Answers → personal ability φᵢ in one pass → logits of every item through the IRT head.

    φᵢ = θ_ability + MLP(encoder(𝒟ᵢˢ)), logits = item_a φᵢ + item_d. ``forward`` returns
    ``[B, n_items]`` logits, `adapt` the ``[B, dims]`` abilities. Derived in chapter 10, section 3.
    """

    def __init__(self, n_items: int, dims: int, *, width: int = 32, hidden: int = 64, seed: int = 0,
                 item_a: Tensor | None = None, item_d: Tensor | None = None,
                 ability: Tensor | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(seed)
            self.encoder = AnswerSetEncoder(n_items, width)
            self.mlp = nn.Sequential(nn.Linear(width + 1, hidden), nn.Tanh(), nn.Linear(hidden, dims))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        init = lambda t, shape: nn.Parameter(torch.zeros(shape) if t is None else t.detach().float().clone())  # noqa: E731
        self.item_a = init(item_a, (n_items, dims))
        self.item_d = init(item_d, (n_items,))
        self.ability = init(ability, (dims,))

    def adapt(self, items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        """φᵢ for every learner of the batch → ``[B, dims]`` (no gradient step)."""
        return self.ability + self.mlp(self.encoder(items, answers, mask))

    def forward(self, items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        return self.adapt(items, answers, mask) @ self.item_a.T + self.item_d


class SmallStudent(nn.Module):
    """A narrow encoder and one hidden layer straight to the logits of every item: ``[B, n_items]``.

    No IRT structure: it learns the item bank through its output layer. Derived in chapter 10, section 3.
    """

    def __init__(self, n_items: int, *, width: int = 8, hidden: int = 8, seed: int = 0,
                 item_d: Tensor | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(seed)
            self.encoder = AnswerSetEncoder(n_items, width)
            self.hidden = nn.Linear(width + 1, hidden)
            self.out = nn.Linear(hidden, n_items)
            nn.init.normal_(self.out.weight, std=0.01)
        if item_d is not None:
            self.out.bias.data.copy_(item_d.detach().float())

    def forward(self, items: Tensor, answers: Tensor, mask: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(self.encoder(items, answers, mask))))


#: Student name -> class; `build_student` makes one from a config dict (what a model file stores).
STUDENTS: dict[str, type[nn.Module]] = {"amortized": AmortizedAdapter, "small": SmallStudent}


def build_student(kind: str, n_items: int, dims: int, options: Mapping[str, int]) -> nn.Module:
    """A fresh student ``kind`` ("amortized" | "small") with ``options`` (width, hidden, seed)."""
    if kind not in STUDENTS:
        raise ValueError(f"unknown student {kind!r}; choose from {sorted(STUDENTS)}")
    if kind == "amortized":
        return AmortizedAdapter(n_items, dims, **options)
    return SmallStudent(n_items, **options)


def distillation_loss(student_logits: Tensor, teacher_prob: Tensor) -> Tensor:
    """Mean over learners and items of the soft binary cross-entropy H(p_teacher, σ(z_student)).

    Equals the mean KL(teacher ‖ student) per item plus the teacher's entropy (a constant), so its
    minimiser matches the teacher's adapted predictions. Shapes ``[B, n_items]``. Chapter 10, section 2.
    """
    if student_logits.shape != teacher_prob.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher probabilities "
                         f"{tuple(teacher_prob.shape)} must have the same shape")
    return F.binary_cross_entropy_with_logits(student_logits, teacher_prob)


class GradientTeacher:
    """Chapter 05's meta-learned `MetaIRT` with its gradient adaptation, one state per trained K.

    ``states[K]`` is a ``MetaIRT`` state dict (item_a, item_d, ability). A learner with n answers is
    adapted by the teacher of the largest trained K ≤ n (the smallest K if n is smaller), ``steps``
    gradient steps of size ``alpha`` on the ability; with no answer the prediction is the prior θ.
    Derived in chapter 05, section 5; used as the teacher in chapter 10.
    """

    def __init__(self, states: Mapping[int, Mapping[str, Tensor]], alpha: float, steps: int) -> None:
        from course_lib.algorithms import MAML
        from course_lib.models.meta_irt import MetaIRT

        if not states:
            raise ValueError("the teacher needs at least one trained state (one per K)")
        self.alpha, self.steps = float(alpha), int(steps)
        self.learners: dict[int, MAML] = {}
        for k in sorted(int(k) for k in states):
            state = states[k] if k in states else states[str(k)]
            n_items, dims = state["item_a"].shape
            model = MetaIRT(n_items, dims)
            model.load_state_dict({n: v.detach().float() for n, v in state.items()})
            model.requires_grad_(False)
            self.learners[k] = MAML(model, loss="bce", alpha=alpha, steps=steps, adapt=["ability"])
        first = next(iter(self.learners.values())).model
        self.n_items, self.dims = first.item_a.shape

    def states(self) -> dict[int, dict[str, Tensor]]:
        """The ``{K: state dict}`` this teacher was built from (what a model file stores)."""
        return {k: {n: v.detach().clone() for n, v in m.model.state_dict().items()} for k, m in self.learners.items()}

    def for_count(self, n: int):
        """The MAML learner of the largest trained K ≤ n (the smallest K when n is below all)."""
        ks = [k for k in self.learners if k <= n]
        return self.learners[max(ks) if ks else min(self.learners)]

    def logits(self, items: Tensor, answers: Tensor, mask: Tensor | None = None) -> Tensor:
        """Adapted logits of every item for each learner: ``[B, n] → [B, n_items]`` (gradient steps)."""
        from course_lib.tasks import TaskBatch

        maskf = check_answers(items, answers, mask, self.n_items)
        counts = maskf.sum(1).long()
        everything = torch.arange(self.n_items)
        out = torch.empty(len(items), self.n_items)
        for n in counts.unique().tolist():
            rows = torch.nonzero(counts == n).flatten()
            learner = self.for_count(n)
            if n == 0:
                with torch.no_grad():
                    out[rows] = learner.model(everything)
                continue
            m = maskf[rows] > 0
            batch = TaskBatch(items[rows].long(), answers[rows].float(), items[rows].long(), answers[rows].float(),
                              support_mask=m)
            phi = learner.adapt_batch(batch)
            out[rows] = learner.predict_batch(phi, everything.expand(len(rows), -1))
        return out

    def information(self, prob: Tensor, n_answers: int) -> Tensor:
        """Fisher information p(1 − p)‖aⱼ‖² of every item (chapter 07's rule): ``[B, n_items]``."""
        a = self.for_count(n_answers).model.item_a.detach()
        return prob * (1 - prob) * a.pow(2).sum(1)


def sample_answer_sets(responses: Tensor, learners: Tensor, batch: int, n_answers: int,
                       generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``batch`` random learners of ``learners``, each with ``n_answers`` random answered items.

    Returns ``items [batch, max(n_answers, 1)]`` long, ``answers`` float and ``mask`` float (all 0
    when ``n_answers`` is 0: a learner who answered nothing yet). Uses `course_lib.tasks.learner_tasks`.
    """
    from course_lib.tasks import learner_tasks

    ix = learners[torch.randint(len(learners), (batch,), generator=generator)]
    tasks = learner_tasks(responses, max(n_answers, 1), ix, generator=generator, max_query=1)
    mask = torch.full(tasks.x_support.shape, float(n_answers > 0))
    return tasks.x_support, tasks.y_support, mask


def distill(student: nn.Module, teacher: GradientTeacher, responses: Tensor, learners: Tensor, *,
            steps: int = 2000, batch: int = 256, max_answers: int = 20, lr: float = 3e-3, seed: int = 0,
            focus: Sequence[int] = (), progress: bool = True) -> dict[str, list[float]]:
    """Train ``student`` to match the teacher's adapted predictions of every item (`distillation_loss`).

    Each step draws ``batch`` learners of ``learners`` (training learners only) with n answers, n
    uniform in 0..max_answers, asks the teacher for its adapted probabilities ``[batch, n_items]``
    and takes one Adam step (cosine-decayed rate) on the student. Returns the loss history.
    Derived in chapter 10, section 3.
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch < 1 or max_answers < 0:
        raise ValueError(f"need steps >= 1, batch >= 1, max_answers >= 0; got {steps}, {batch}, {max_answers}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    window = []
    for step in tqdm(range(1, steps + 1), desc="distil", disable=not progress, mininterval=0.5):
        if focus and step % 2 == 0:
            n = int(focus[int(torch.randint(len(focus), (1,), generator=g))])
        else:
            n = int(torch.randint(max_answers + 1, (1,), generator=g))
        items, answers, mask = sample_answer_sets(responses, learners, batch, n, g)
        target = torch.sigmoid(teacher.logits(items, answers, mask > 0))
        loss = distillation_loss(student(items, answers, mask), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append(loss.detach())
        if step % max(steps // 20, 1) == 0 or step == steps:
            history["step"].append(step)
            history["loss"].append(float(torch.stack(window).mean()))
            window.clear()
    return history
