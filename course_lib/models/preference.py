"""A MeLU-style meta-learned preference model for recommending lecturers (learning resources).

Derived in chapter 06 (Personalized learning-resource recommendation), section 3, after MeLU
(Lee et al., KDD 2019). A rating is predicted from the lecture's features and the student's
covariate,

    r̂ = μ + bⱼ + b_student + d_φ([e_lecturer ; e_dept ; e_service ; e_lectage ; e_studage]),

where the embeddings e and the lecturer offsets bⱼ are *meta-learned only* (shared by every
student, part of θ), and the decision layers d together with the student offset b_student are
*adapted per student* in the inner loop: φᵢ = θ − α ∇ L(θ; 𝒟ᵢˢ) restricted to those parameters
(``adapt=ADAPT`` in :class:`course_lib.algorithms.MAML`). A new student therefore starts from the
meta-learned decision layers (what works for the average student) and moves them with a few
gradient steps on their K ratings.

The meta-training recipe (section 4) is here too: :class:`MeLUTraining` holds its settings,
:func:`meta_train` runs MAML, first-order MAML or Reptile with early stopping on validation
students, :func:`choose_steps` picks the test-time inner steps per K, and :func:`predictions`
adapts and predicts a batch of new students.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from course_lib.algorithms import MAML, Reptile
from course_lib.baselines.popularity import Popularity
from course_lib.data.insteval import CARDINALITY, FEATURES, student_task_sampler
from course_lib.metrics import ndcg_at_k_rows
from course_lib.tasks import TaskBatch

__all__ = ["MeLU", "ADAPT", "lecturer_catalogue", "top_k", "META_VARIANTS", "MeLUTraining", "make_melu",
           "meta_train", "predictions", "choose_steps", "rating_scores", "Validation"]

#: The meta-learners the chapter compares on the same model.
META_VARIANTS: tuple[str, ...] = ("MAML", "FOMAML", "Reptile")
#: Validation tasks per K setting ("1", ..., "all"): a padded batch and its true query ratings ``[students, n_query]``.
Validation = Mapping[str, tuple[TaskBatch, np.ndarray]]

#: Parameter-name prefixes adapted per student: the decision layers and the student offset.
ADAPT: list[str] = ["decision.", "student_bias"]


class MeLU(nn.Module):
    """Embeddings of lecture and student covariates -> decision MLP -> rating, plus two offsets.

    Input ``x [..., 5]`` long codes in :data:`course_lib.data.insteval.FEATURES` order (lecturer,
    dept, service, lectage, studage); output ``[...]`` predicted ratings. ``mu`` initialises the
    global offset (e.g. the mean training rating); ``lecturer_offsets [n_lecturers]`` optionally
    initialises bⱼ (e.g. the popularity baseline's shrunk means), otherwise they start at 0.
    ``features``: the codes the decision layers see (default all five: the lecturer, the item-side
    covariates dept, service, lectage and the learner-side studage); ``("lecturer",)`` is the
    covariate-free ablation of chapter 06, section 11. ``x`` always carries all five columns.
    """

    def __init__(self, embed_dim: int = 8, hidden: int = 32, n_layers: int = 2, mu: float = 3.2,
                 lecturer_offsets: Tensor | np.ndarray | None = None,
                 cardinality: dict[str, int] | None = None, features: tuple[str, ...] = FEATURES) -> None:
        super().__init__()
        card = dict(CARDINALITY if cardinality is None else cardinality)
        if set(card) != set(FEATURES):
            raise ValueError(f"cardinality needs the keys {FEATURES}, got {sorted(card)}")
        if embed_dim < 1 or hidden < 1 or n_layers < 1:
            raise ValueError(f"need embed_dim, hidden, n_layers >= 1; got {embed_dim}, {hidden}, {n_layers}")
        features = tuple(features)
        if not features or len(set(features)) != len(features) or not set(features) <= set(FEATURES):
            raise ValueError(f"features must be distinct names from {FEATURES}, got {features}")
        self.features = tuple(f for f in FEATURES if f in features)
        self.embed = nn.ModuleDict({name: nn.Embedding(card[name], embed_dim) for name in self.features})
        for e in self.embed.values():
            nn.init.normal_(e.weight, std=0.1)
        self.lecturer_bias = nn.Embedding(card["lecturer"], 1)
        nn.init.zeros_(self.lecturer_bias.weight)
        if lecturer_offsets is not None:
            offsets = torch.as_tensor(np.asarray(lecturer_offsets), dtype=torch.float32)
            if offsets.shape != (card["lecturer"],):
                raise ValueError(f"lecturer_offsets must have shape [{card['lecturer']}], got {tuple(offsets.shape)}")
            with torch.no_grad():
                self.lecturer_bias.weight[:, 0] = offsets
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        self.student_bias = nn.Parameter(torch.zeros(()))
        layers: list[nn.Module] = []
        width = embed_dim * len(self.features)
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        out = nn.Linear(width, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.decision = nn.Sequential(*layers, out)

    def forward(self, x: Tensor) -> Tensor:
        """Predicted ratings ``[...]`` for feature codes ``x [..., 5]``."""
        z = torch.cat([self.embed[name](x[..., FEATURES.index(name)]) for name in self.features], dim=-1)
        return (self.mu + self.student_bias + self.lecturer_bias(x[..., 0]).squeeze(-1)
                + self.decision(z).squeeze(-1))


def lecturer_catalogue(ratings: pd.DataFrame, studage: int = 0) -> Tensor:
    """Feature codes ``[n_lecturers, 5]`` to score every lecturer for a student in semester group ``studage``.

    Each lecturer gets their department, their most frequent service flag, and ``lectage = 0``
    (a lecture of the most recent semester): "how would this student rate a course by lecturer j now?".
    """
    if not 0 <= studage < CARDINALITY["studage"]:
        raise ValueError(f"studage must be a code in 0..{CARDINALITY['studage'] - 1}, got {studage}")
    per = ratings.groupby("lecturer").agg(dept=("dept", "first"),
                                          service=("service", lambda s: int(s.mean() >= 0.5)))
    per = per.reindex(range(CARDINALITY["lecturer"]))
    if per.isna().any().any():
        raise ValueError("some lecturer has no rating in `ratings`; pass the full table from load_insteval()")
    x = np.stack([per.index.to_numpy(), per["dept"].to_numpy(), per["service"].to_numpy(),
                  np.zeros(len(per), np.int64), np.full(len(per), studage)], 1).astype(np.int64)
    return torch.as_tensor(x)


def top_k(scores: Tensor, k: int = 5, exclude: Tensor | np.ndarray | list[int] | None = None) -> Tensor:
    """Indices of the ``k`` highest ``scores [n_items]``, never recommending the ``exclude``d (already rated) ones."""
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [n_items], got shape {tuple(scores.shape)}")
    s = scores.detach().clone().float()
    if exclude is not None:
        ex = torch.tensor(np.array(exclude, dtype=np.int64).reshape(-1))
        if ex.numel():
            s[ex] = float("-inf")
    n_left = int(torch.isfinite(s).sum())
    if not 1 <= k <= n_left:
        raise ValueError(f"k must be between 1 and the {n_left} items left to recommend, got {k}")
    return torch.topk(s, k).indices



# ------------------------------------------------------------------------------------ meta-training

def rating_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-student MAE, squared error and nDCG@3 of ``[students, n_query]`` predictions clipped to 1..5.

    Returns ``{"mae", "mse", "ndcg3"}``, each ``[students]``. Derived in chapter 06, section 2.
    """
    y_pred = np.clip(np.asarray(y_pred, float), 1.0, 5.0)
    y_true = np.asarray(y_true, float)
    if np.isnan(y_pred).any():
        raise ValueError("predictions contain NaN")
    err = y_pred - y_true
    return {"mae": np.abs(err).mean(1), "mse": (err ** 2).mean(1), "ndcg3": ndcg_at_k_rows(y_true, y_pred, 3)}


@dataclass(frozen=True)
class MeLUTraining:
    """Settings of the MeLU-style model and its meta-training (the chapter's defaults).

    ``alpha``/``steps``: inner step size and steps of MAML and FOMAML (and of every variant's
    evaluation); ``beta``: outer Adam step; ``train_k_shot``: the support size of meta-training
    tasks ("random": K drawn per student, so one θ serves every K); ``reptile_*``: Reptile's own
    inner loop and outer step; ``validate_every``: iterations between early-stopping checks;
    ``features``: the codes the model embeds (see :class:`MeLU`).
    """

    features: tuple[str, ...] = FEATURES
    embed_dim: int = 8
    hidden: int = 32
    n_layers: int = 2
    init_from_popularity: bool = True
    meta_batch: int = 32
    iterations: int = 1500
    validate_every: int = 250
    beta: float = 3e-3
    weight_decay: float = 0.0
    alpha: float = 0.1
    steps: int = 1
    train_k_shot: str = "random"
    reptile_alpha: float = 0.3
    reptile_steps: int = 3
    reptile_beta: float = 3e-3
    reptile_outer: str = "adam"
    reptile_adapt_all: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.meta_batch < 1 or self.validate_every < 1:
            raise ValueError("iterations, meta_batch and validate_every must be >= 1")
        if self.steps < 1 or self.reptile_steps < 1:
            raise ValueError(f"steps and reptile_steps must be >= 1, got {self.steps} and {self.reptile_steps}")
        if not self.features or not set(self.features) <= set(FEATURES):
            raise ValueError(f"features must be names from {FEATURES}, got {self.features}")
        if self.reptile_outer not in ("adam", "sgd"):
            raise ValueError(f"reptile_outer must be 'adam' or 'sgd', got {self.reptile_outer!r}")


def make_melu(train: pd.DataFrame, recipe: MeLUTraining = MeLUTraining(),
              device: torch.device | str = "cpu") -> MeLU:
    """A fresh MeLU whose μ (and, with ``init_from_popularity``, bⱼ) start from the shrunk lecturer means.

    ``train``: the training students' ratings (``load_insteval`` columns). Derived in chapter 06, section 3.
    """
    pop = Popularity(5.0).fit(train["student"].to_numpy(), train["lecturer"].to_numpy(), train["rating"].to_numpy(),
                              n_lecturers=CARDINALITY["lecturer"])
    return MeLU(recipe.embed_dim, recipe.hidden, recipe.n_layers, mu=pop.mu,
                lecturer_offsets=pop.item_bias if recipe.init_from_popularity else None,
                features=recipe.features).to(device)


def predictions(learner: MAML, batch: TaskBatch, steps: int) -> np.ndarray:
    """``[students, n_query]`` predictions after ``steps`` inner steps on each student's support set (0: θ)."""
    if steps == 0:
        theta = {name: v.detach() for name, v in learner.theta.items()}
        with torch.no_grad():
            pred = torch.func.functional_call(learner.model, theta, (batch.x_query,))
    else:
        pred = learner.predict_batch(learner.adapt_batch(batch, steps=steps), batch.x_query)
    return pred.detach().cpu().numpy()


def _validation_mae(learner: MAML, validation: Validation, steps: Sequence[int]) -> float:
    """Mean over the K settings of the best validation MAE over a few inner-step counts."""
    return float(np.mean([min(rating_scores(y, predictions(learner, b, s))["mae"].mean() for s in steps)
                          for b, y in validation.values()]))


def _outer_loop(variant: str, model: MeLU, recipe: MeLUTraining
                ) -> tuple[MAML | Reptile, torch.optim.Optimizer]:
    """The meta-learner that trains ``model`` with ``variant`` and its outer optimiser.

    MAML and FOMAML adapt only ``ADAPT``; the embeddings and lecturer offsets get the outer
    gradient. Reptile has no outer gradient of its own (θ moves towards the adapted φ), so every
    parameter adapts in its inner loop unless ``reptile_adapt_all`` is False.
    """
    if variant == "Reptile":
        algo = Reptile(model, "mse", alpha=recipe.reptile_alpha, steps=recipe.reptile_steps,
                       beta=recipe.reptile_beta, adapt=None if recipe.reptile_adapt_all else ADAPT)
        if recipe.reptile_outer == "adam":
            return algo, torch.optim.AdamW(algo.parameters(), lr=recipe.reptile_beta, weight_decay=recipe.weight_decay)
        return algo, torch.optim.SGD(algo.parameters(), lr=recipe.reptile_beta)
    algo = MAML(model, "mse", alpha=recipe.alpha, steps=recipe.steps, first_order=variant == "FOMAML", adapt=ADAPT)
    return algo, torch.optim.AdamW(algo.parameters(), lr=recipe.beta, weight_decay=recipe.weight_decay)


def meta_train(variant: str, ratings: pd.DataFrame, students: np.ndarray, validation: Validation,
               recipe: MeLUTraining = MeLUTraining(), *, n_query: int = 10, seed: int = 0,
               device: torch.device | str = "cpu", progress: bool = True) -> tuple[MAML, dict]:
    """Meta-train a MeLU on the training ``students`` with ``variant`` (MAML | FOMAML | Reptile).

    Every ``validate_every`` iterations the MAE on ``validation`` is measured and the best θ is kept
    (early stopping: the lecturer embeddings start to memorise the training students' ratings).
    Returns a :class:`MAML` learner on the trained model (α-steps on ``ADAPT``, how every variant
    is evaluated) and the history (training loss, validation MAE, best iteration).
    Derived in chapter 06, section 4.
    """
    from tqdm.auto import tqdm

    if variant not in META_VARIANTS:
        raise ValueError(f"variant must be one of {META_VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    model = make_melu(ratings[ratings["student"].isin(students)], recipe, device)
    sample = student_task_sampler(ratings, students, recipe.meta_batch, n_query, device=device,
                                  k_shot=recipe.train_k_shot if variant != "Reptile" else "all")
    algo, opt = _outer_loop(variant, model, recipe)
    learner = MAML(model, "mse", alpha=recipe.alpha, steps=recipe.steps, adapt=ADAPT)
    check_steps = sorted({0, recipe.steps, 3 * recipe.steps})
    history: dict[str, list] = {"iteration": [], "loss": [], "validation_mae": []}
    snapshot = lambda: {name: v.detach().clone() for name, v in model.state_dict().items()}  # noqa: E731
    best = (_validation_mae(learner, validation, check_steps), snapshot(), 0)
    bar = tqdm(total=recipe.iterations, desc=f"MeLU-{variant}", disable=not progress, mininterval=0.5)
    done = 0
    while done < recipe.iterations:
        n = min(recipe.validate_every, recipe.iterations - done)
        loss = algo.fit(sample, n, seed=seed + done, progress=False, optimizer=opt, log_every=n)["loss"][-1]
        done += n
        score = _validation_mae(learner, validation, check_steps)
        history["iteration"].append(done)
        history["loss"].append(loss)
        history["validation_mae"].append(score)
        if score < best[0]:
            best = (score, snapshot(), done)
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.3f}", validation_mae=f"{score:.4f}", refresh=False)
    bar.close()
    model.load_state_dict(best[1])
    history["best_iteration"], history["best_validation_mae"] = best[2], best[0]
    return learner, history


def choose_steps(learner: MAML, validation: Validation,
                 candidates: Sequence[int] = (0, 1, 2, 3, 5, 8)) -> tuple[dict[str, int], dict[str, dict[int, float]]]:
    """For each K setting of ``validation``, the test-time inner steps with the lowest validation MAE.

    Returns ``(steps, grid)``: the chosen steps per K and the validation MAE of every candidate.
    Gradient steps on the mean support loss move the student offset by a fixed fraction of the
    mean residual per step, whatever K is; a Bayesian would trust 1 rating less than 10. Choosing
    the steps per K on validation students restores that (more data, more steps). Chapter 06, section 5.
    """
    if not candidates or min(candidates) < 0:
        raise ValueError(f"candidates must be non-empty, non-negative step counts, got {candidates}")
    steps, grid = {}, {}
    for key, (batch, y) in validation.items():
        maes = [float(rating_scores(y, predictions(learner, batch, s))["mae"].mean()) for s in candidates]
        steps[key] = int(candidates[int(np.argmin(maes))])
        grid[key] = dict(zip(candidates, maes))
    return steps, grid
