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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from course_lib.data.insteval import CARDINALITY, FEATURES

__all__ = ["MeLU", "ADAPT", "lecturer_catalogue", "top_k"]

#: Parameter-name prefixes adapted per student: the decision layers and the student offset.
ADAPT: list[str] = ["decision.", "student_bias"]


class MeLU(nn.Module):
    """Embeddings of lecture and student covariates -> decision MLP -> rating, plus two offsets.

    Input ``x [..., 5]`` long codes in :data:`course_lib.data.insteval.FEATURES` order (lecturer,
    dept, service, lectage, studage); output ``[...]`` predicted ratings. ``mu`` initialises the
    global offset (e.g. the mean training rating); ``lecturer_offsets [n_lecturers]`` optionally
    initialises bⱼ (e.g. the popularity baseline's shrunk means), otherwise they start at 0.
    """

    def __init__(self, embed_dim: int = 8, hidden: int = 32, n_layers: int = 2, mu: float = 3.2,
                 lecturer_offsets: Tensor | np.ndarray | None = None,
                 cardinality: dict[str, int] | None = None) -> None:
        super().__init__()
        card = dict(CARDINALITY if cardinality is None else cardinality)
        if set(card) != set(FEATURES):
            raise ValueError(f"cardinality needs the keys {FEATURES}, got {sorted(card)}")
        if embed_dim < 1 or hidden < 1 or n_layers < 1:
            raise ValueError(f"need embed_dim, hidden, n_layers >= 1; got {embed_dim}, {hidden}, {n_layers}")
        self.embed = nn.ModuleDict({name: nn.Embedding(card[name], embed_dim) for name in FEATURES})
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
        width = embed_dim * len(FEATURES)
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        out = nn.Linear(width, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.decision = nn.Sequential(*layers, out)

    def forward(self, x: Tensor) -> Tensor:
        """Predicted ratings ``[...]`` for feature codes ``x [..., 5]``."""
        z = torch.cat([self.embed[name](x[..., i]) for i, name in enumerate(FEATURES)], dim=-1)
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
