"""Chapter 01's learner response model: public item features, learned item embeddings, a per-learner head.

Derived in chapter 01, section 3. `LearnerModel` is an IRT-like logistic model whose item side
(embedding eⱼ and offset cⱼ) is shared by every learner and whose learner side (the head w) is
what each method adapts (`ADAPT`). Two ways of fitting it live here: `meta_train` (MAML over
learner tasks, one θ for several K) and `fit_per_learner_heads` (one head per learner fitted on
everybody's answers at once: the model behind chapter 01's leakage section). Pretraining and
fine-tuning it are ``course_lib.baselines.fine_tuning``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib.algorithms import MAML
from course_lib.tasks import learner_tasks

__all__ = ["LearnerModel", "ADAPT", "meta_train", "fit_per_learner_heads"]

ADAPT = ["head."]  # the learner's part of the model: the only parameters any method adapts


class LearnerModel(nn.Module):
    """f(j; θ) = w · [xⱼ, eⱼ] + cⱼ: the logit that a learner answers item j correctly.

    xⱼ are the item's public features (a fixed buffer), eⱼ a learned item embedding
    (``embed``, ``embed_dim`` numbers per item) and cⱼ a learned item offset (``offset``): those
    two are the population's part of θ. ``head`` (w) is the learner's part, the one adapted per
    learner. Input: item indices ``[n]`` (long) -> logits ``[n]``. Derived in chapter 01, section 3.
    """

    def __init__(self, features: Tensor, embed_dim: int = 1, init_scale: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if features.dim() != 2:
            raise ValueError(f"features must be [items, features], got shape {tuple(features.shape)}")
        self.register_buffer("features", features.float())
        self.head = nn.Linear(features.shape[1] + embed_dim, 1, bias=False)
        self.embed = nn.Embedding(features.shape[0], embed_dim)
        self.offset = nn.Embedding(features.shape[0], 1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g) * init_scale)
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=g) * init_scale)
            self.offset.weight.zero_()

    def item_inputs(self, items: Tensor) -> Tensor:
        """[xⱼ, eⱼ] for the items ``[n]``: ``[n, features + embed_dim]`` (what the head multiplies)."""
        return torch.cat([self.features[items], self.embed(items)], -1)

    def forward(self, items: Tensor) -> Tensor:
        """Logits of a correct answer on ``items [n]`` for the learner in ``head``: ``[n]``."""
        return self.head(self.item_inputs(items)).squeeze(-1) + self.offset(items).squeeze(-1)


def meta_train(model: nn.Module, responses: Tensor, rows: Tensor, inner: dict[int, tuple[float, int]], *,
               iterations: int, meta_batch: int = 32, n_query: int = 16, beta: float = 0.01,
               adapt: list[str] | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Meta-learning: train one θ with course_lib's MAML on tasks "K answers of a past learner".

    ``inner`` maps each K to its inner loop (α, steps). Meta-iteration t uses the K at position
    t mod len(inner): it samples ``meta_batch`` learners of ``rows``, builds their tasks with
    ``course_lib.tasks.learner_tasks`` (K support answers, up to ``n_query`` query answers) and takes
    one Adam step (outer step β) on that K's MAML loss. Every K updates the same parameters of
    ``model`` (trained in place), so there is one θ that serves every K; adapt it to a new learner
    with ``course_lib.baselines.fine_tuning.adapt_path`` and that K's (α, steps). Returns the
    history: one mean loss per K every ``len(inner) * 10`` iterations. Derived in chapter 01,
    section 3; MAML itself in chapter 03.
    """
    from tqdm.auto import tqdm

    if not inner:
        raise ValueError("inner must map at least one K to its (alpha, steps)")
    if iterations < 1 or meta_batch < 1:
        raise ValueError(f"iterations and meta_batch must be >= 1, got {iterations} and {meta_batch}")
    device = next(model.parameters()).device
    learners = {k_shot: MAML(model, loss="bce", alpha=alpha, steps=steps, adapt=adapt)
                for k_shot, (alpha, steps) in inner.items()}
    opt = torch.optim.Adam(model.parameters(), lr=beta)
    responses, k_shots = responses.to("cpu"), list(inner)
    g = torch.Generator().manual_seed(seed)
    hist: dict = {"iteration": [], "loss": {k_shot: [] for k_shot in k_shots}}
    window: dict[int, list] = {k_shot: [] for k_shot in k_shots}
    every = len(k_shots) * 10
    bar = tqdm(range(1, iterations + 1), desc="MAML (one θ for every K)", disable=not progress, mininterval=0.5)
    for it in bar:
        k_shot = k_shots[(it - 1) % len(k_shots)]
        pick = rows[torch.randint(len(rows), (meta_batch,), generator=g)]
        batch = learner_tasks(responses, k_shot, pick, generator=g, max_query=n_query).to(device)
        window[k_shot].append(learners[k_shot].step(batch, opt).detach())
        if it % every == 0 or it == iterations:
            hist["iteration"].append(it)
            for logged_k_shot, losses in window.items():
                hist["loss"][logged_k_shot].append(torch.stack(losses).mean().item() if losses else float("nan"))
                losses.clear()
    return hist


def fit_per_learner_heads(model: LearnerModel, answers: Tensor, weight: Tensor, *, steps: int,
                          lr: float = 0.05, ridge: float = 0.5, progress: bool = True) -> Tensor:
    """One head wᵢ per learner plus the item side of ``model``, fitted on everybody's answers at once.

    A matrix-factorisation-like model: logit[i, j] = wᵢ · [xⱼ, eⱼ] + cⱼ. Minimises the mean binary
    cross-entropy of the answers with ``weight`` 1 (the training cells) plus ``ridge`` · Σ‖wᵢ‖² /
    (number of training cells), full batch with Adam; ``model.embed`` and ``model.offset`` are
    trained in place. Shapes: ``answers, weight [learners, items]`` (answers 0/1, NaN not allowed:
    give missing cells weight 0) -> P(correct) ``[learners, items]``. Derived in chapter 01, section 5.
    """
    from tqdm.auto import tqdm

    if answers.shape != weight.shape or answers.shape[1] != model.features.shape[0]:
        raise ValueError(f"answers and weight must both be [learners, {model.features.shape[0]} items]; got "
                         f"{tuple(answers.shape)} and {tuple(weight.shape)}")
    if torch.isnan(answers).any():
        raise ValueError("answers contain NaN: fill missing cells (e.g. nan_to_num(0)) and give them weight 0")
    heads = nn.Parameter(torch.zeros(answers.shape[0], model.head.weight.shape[1], device=answers.device))
    items = torch.arange(answers.shape[1], device=answers.device)
    opt = torch.optim.Adam([heads, model.embed.weight, model.offset.weight], lr=lr)

    def logits() -> Tensor:
        return heads @ model.item_inputs(items).T + model.offset.weight.T  # [learners, items]

    for _ in tqdm(range(steps), desc="per-learner model, split by interaction", disable=not progress,
                  mininterval=0.5):
        opt.zero_grad()
        ll = nn.functional.binary_cross_entropy_with_logits(logits(), answers, weight=weight, reduction="sum")
        (ll / weight.sum() + ridge * heads.pow(2).sum() / weight.sum()).backward()
        opt.step()
    with torch.no_grad():
        return torch.sigmoid(logits())
