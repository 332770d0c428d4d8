"""Learner x item response matrices: validation, checksums and splits by learner.

Derived in chapter 05, section 2. Every loader in ``course_lib.data`` returns a
``[learners, items]`` float tensor with 1 = correct, 0 = incorrect and NaN = *missing* (not
answered, not shown). Missing is never the same as wrong: a learner who skipped an item tells us
nothing about whether they could solve it. `validate_responses` accepts any such matrix (a
tensor, a NumPy array or a pandas DataFrame), so the course can be pointed at a reader's own data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from course_lib.tasks import permutation

__all__ = ["ResponseData", "validate_responses", "responses_checksum", "verify_checksum",
           "split_learners", "ChecksumError", "StudyData", "DATASETS", "load_study_data", "item_statistics"]

#: The response datasets the chapter 05 and 07 studies know by name.
DATASETS = ("swesat", "verbagg", "lsat6", "lsat7", "synthetic", "synthetic_2d")


class ChecksumError(ValueError):
    """The data a loader produced is not the data its card documents (the package's data changed)."""


@dataclass(frozen=True)
class ResponseData:
    """A validated response matrix and what is known about its items and learners.

    ``responses [learners, items]`` float32 (1 correct, 0 incorrect, NaN missing); ``items`` one row
    per item (at least a ``name`` column; ``group`` when items come in sections); ``learners`` one
    row per learner (covariates, may have no columns); ``checksum`` the sha256 of
    `responses_checksum`. Derived in chapter 05, section 2.
    """

    name: str
    responses: Tensor
    items: pd.DataFrame
    learners: pd.DataFrame = field(default_factory=pd.DataFrame)
    checksum: str = ""
    source: str = ""

    @property
    def n_learners(self) -> int:
        """Number of learners (rows)."""
        return self.responses.shape[0]

    @property
    def n_items(self) -> int:
        """Number of items (columns)."""
        return self.responses.shape[1]

    @property
    def missing_rate(self) -> float:
        """Share of learner x item cells with no answer."""
        return float(torch.isnan(self.responses).float().mean())

    def summary(self) -> pd.DataFrame:
        """One-row table: learners, items, answers, missing answers, share correct."""
        r = self.responses
        answered = ~torch.isnan(r)
        return pd.DataFrame([{
            "dataset": self.name, "learners": self.n_learners, "items": self.n_items,
            "answers": int(answered.sum()), "missing": int((~answered).sum()),
            "share_correct": float(torch.nanmean(r)),
            "min_answered_per_learner": int(answered.sum(1).min()),
        }])


def validate_responses(responses, *, k_shot: int | None = None, name: str = "responses") -> Tensor:
    """Check a learner x item matrix and return it as a float32 tensor with NaN for missing.

    Accepts a tensor, NumPy array or DataFrame ``[learners, items]``. Raises ``ValueError`` with a
    fix when: it is not 2-D, a value is not 0, 1 or NaN, a learner (row) or item (column) has no
    answer at all, or (with ``k_shot``) a learner has fewer than ``k_shot + 1`` answers (K for the
    support set, at least one left to predict). Derived in chapter 05, section 2.
    """
    if isinstance(responses, pd.DataFrame):
        try:
            responses = responses.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: every column must be numeric 0/1 with NaN for missing ({e})") from e
    if isinstance(responses, np.ndarray):
        if responses.dtype == object or not np.issubdtype(responses.dtype, np.number) and responses.dtype != bool:
            raise ValueError(f"{name}: expected numbers 0/1 (NaN for missing), got dtype {responses.dtype}")
        responses = torch.as_tensor(responses.astype(np.float32))
    if not isinstance(responses, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, numpy array or pandas DataFrame, "
                         f"got {type(responses).__name__}")
    if responses.dim() != 2:
        raise ValueError(f"{name} must be a [learners, items] matrix, got shape {tuple(responses.shape)}")
    if responses.shape[0] == 0 or responses.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(responses.shape)}); need at least one learner and item")
    r = responses.detach().to("cpu", torch.float32)
    answered = ~torch.isnan(r)
    bad = answered & (r != 0) & (r != 1)
    if bad.any():
        i, j = (int(v) for v in torch.nonzero(bad)[0])
        values = torch.unique(r[bad])[:5].tolist()
        raise ValueError(f"{name} must hold 0 (incorrect), 1 (correct) or NaN (missing); found "
                         f"{values} (first at learner {i}, item {j}). Recode scores to 0/1, e.g. "
                         "(chosen_option == key), and put NaN where a learner gave no answer.")
    empty_rows = torch.nonzero(~answered.any(1)).flatten()
    if len(empty_rows):
        raise ValueError(f"{name}: {len(empty_rows)} learners have no answer at all (first: row "
                         f"{int(empty_rows[0])}); drop them, e.g. responses[~torch.isnan(responses).all(1)]")
    empty_cols = torch.nonzero(~answered.any(0)).flatten()
    if len(empty_cols):
        raise ValueError(f"{name}: {len(empty_cols)} items were answered by nobody (first: column "
                         f"{int(empty_cols[0])}); drop those columns")
    if k_shot is not None:
        if k_shot < 1:
            raise ValueError(f"k_shot must be >= 1, got {k_shot}")
        counts = answered.sum(1)
        short = torch.nonzero(counts < k_shot + 1).flatten()
        if len(short):
            raise ValueError(f"{name}: K = {k_shot} needs at least {k_shot + 1} answered items per learner "
                             f"(K to adapt on, >= 1 to predict) but {len(short)} learners have fewer (e.g. "
                             f"row {int(short[0])} has {int(counts[short[0]])}). Lower K or drop those "
                             f"learners: responses[(~torch.isnan(responses)).sum(1) > {k_shot}]")
    return r


def responses_checksum(responses: Tensor) -> str:
    """sha256 of a response matrix in a canonical byte form (independent of the NaN bit pattern).

    Bytes hashed: the shape as two little-endian int64, then the matrix as int8 row-major with
    1 = correct, 0 = incorrect, -1 = missing. Derived in chapter 05, section 2.
    """
    r = torch.as_tensor(responses).detach().cpu().float()
    codes = torch.where(torch.isnan(r), torch.tensor(-1.0), r).to(torch.int8).numpy()
    h = hashlib.sha256(np.asarray(r.shape, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(codes).tobytes())
    return h.hexdigest()


def verify_checksum(responses: Tensor, expected: str, *, dataset: str, card: str) -> str:
    """Compare `responses_checksum` with the value on the data card; raise `ChecksumError` if they differ."""
    got = responses_checksum(responses)
    if got != expected:
        raise ChecksumError(
            f"{dataset}: the loaded matrix has sha256 {got} but the data card {card} documents "
            f"{expected}. The installed package's data changed (another version?). Results would not "
            "match the course's; install the version named on the card, or pass verify=False and "
            "update the card after checking the data.")
    return got


def split_learners(n_learners: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), *,
                   seed: int = 0) -> dict[str, Tensor]:
    """Split learners 0..n-1 at random into train / validation / test index tensors.

    Cold start means the test learners are *new*: no answer of theirs is seen in meta-training.
    Returns ``{"train", "validation", "test"}`` sorted LongTensors that partition range(n).
    Derived in chapter 01, section 3 (split by learner) and used in chapter 05.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_val = int(round(fractions[1] * n_learners))
    n_test = int(round(fractions[2] * n_learners))
    n_train = n_learners - n_val - n_test
    if min(n_train, n_test) < 1 or (fractions[1] > 0 and n_val < 1):
        raise ValueError(f"{n_learners} learners are too few for fractions {fractions}: each split needs "
                         "at least one learner")
    perm = permutation(n_learners, torch.Generator().manual_seed(seed))
    return {"train": perm[:n_train].sort().values,
            "validation": perm[n_train:n_train + n_val].sort().values,
            "test": perm[n_train + n_val:].sort().values}


class StudyData(NamedTuple):
    """What a learner-modelling study runs on: ``responses [learners, items]`` (1/0, NaN missing),
    optional item ``groups`` (one label per item, e.g. test sections) and, for synthetic data, the
    ``truth`` (the `SyntheticIRT` that generated it, for the Bayes-optimal ceiling)."""

    responses: Tensor
    groups: list | None = None
    truth: object | None = None


def load_study_data(dataset: str, seed: int = 0) -> StudyData:
    """The `StudyData` of a named dataset: swesat (groups = its sections), verbagg, lsat6, lsat7, synthetic and
    synthetic_2d (2000 learners x 60 items, 5 % missing; truth = the `SyntheticIRT`). The data cards
    in ``datasets/`` describe each one. Derived in chapter 05, section 2.
    """
    if dataset == "swesat":
        from course_lib.data.swesat import load_swesat
        d = load_swesat()
        return StudyData(d.responses, list(d.items["group"]))
    if dataset == "verbagg":
        from course_lib.data.verbagg import load_verbagg
        return StudyData(load_verbagg().responses)
    if dataset in ("lsat6", "lsat7"):
        from course_lib.data.lsat import load_lsat
        return StudyData(load_lsat(int(dataset[-1])).responses)
    if dataset in ("synthetic", "synthetic_2d"):
        from course_lib.data.synthetic import STUDY_SHA256, sample_2pl
        s = (sample_2pl(2000, 60, missing_rate=0.05, seed=seed) if dataset == "synthetic" else
             sample_2pl(2000, 60, dims=2, correlation=0.3, missing_rate=0.05, seed=seed))
        if dataset == "synthetic" and seed == 0:
            verify_checksum(s.responses, STUDY_SHA256, dataset="synthetic 2PL", card="datasets/synthetic_irt.md")
        return StudyData(s.responses, None, s)
    raise ValueError(f"unknown dataset {dataset!r}; use one of {DATASETS} or pass your own StudyData")


def item_statistics(responses: Tensor, eps: float = 0.5) -> Tensor:
    """Two classical test theory statistics per item, from calibration learners: ``[items, 2]``.

    Column 0: the logit of the share correct among those who answered (with ``eps`` added to the
    right and the wrong counts, so an item everyone solved stays finite); column 1: the item-rest
    correlation (point-biserial correlation of the item with the learner's share correct on the
    other answered items), the classical discrimination index. Missing answers are left out. These
    are the item features of chapter 03, section 8: they mean the same on any test, so a model that
    reads them can move to items it has never seen.
    """
    r = validate_responses(responses, name="responses")
    answered = ~torch.isnan(r)
    y = r.nan_to_num(0.0)
    right, n = y.sum(0), answered.sum(0).float()
    easiness = torch.log((right + eps) / (n - right + eps))
    total, count = y.sum(1, keepdim=True), answered.sum(1, keepdim=True).float()
    rest = (total - y) / (count - answered.float()).clamp_min(1.0)  # share correct on the other items
    m = answered.float()

    def centred(v: Tensor) -> Tensor:
        return (v - (v * m).sum(0) / m.sum(0).clamp_min(1.0)) * m

    cy, cr = centred(y), centred(rest)
    corr = (cy * cr).sum(0) / ((cy.pow(2).sum(0) * cr.pow(2).sum(0)).sqrt().clamp_min(1e-12))
    return torch.stack([easiness, corr], 1)
