"""InstEval loader, split by student, task construction and the meta-training sampler (chapter 06)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.data import insteval as ie


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return ie.load_insteval()


@pytest.fixture(scope="module")
def split(ratings):
    return ie.split_students(ratings, seed=0)


def test_loader_matches_data_card(ratings):
    assert len(ratings) == 73421
    assert ratings["student"].nunique() == 2972 and ratings["lecturer"].nunique() == 1128
    for name, levels in ie.CARDINALITY.items():
        assert ratings[name].min() == 0 and ratings[name].max() == levels - 1
    assert set(np.unique(ratings["rating"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert not ratings.isna().any().any()
    assert not ratings.duplicated(["student", "lecturer"]).any()  # one rating per (student, lecturer)
    assert (ratings.groupby("lecturer")["dept"].nunique() == 1).all()


def test_checksum_is_asserted(monkeypatch):
    monkeypatch.setattr(ie, "SHA256", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        ie.load_insteval()
    assert len(ie.load_insteval(verify=False)) == 73421


def test_split_is_by_student_and_filters_counts(ratings, split):
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    counts = ratings.groupby("student").size()
    used = np.concatenate([split.train, split.validation, split.test])
    assert len(used) == ((counts >= 13) & (counts <= 100)).sum() == 2206
    assert counts.loc[used].between(13, 100).all()
    assert abs(len(split.train) / len(used) - 0.7) < 0.01
    again = ie.split_students(ratings, seed=0)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(ie.split_students(ratings, seed=1).test, split.test)


def test_split_rejects_overlap_and_bad_fractions(ratings):
    with pytest.raises(ValueError, match="two splits"):
        ie.StudentSplit(np.array([1, 2]), np.array([2]), np.array([3]))
    with pytest.raises(ValueError, match="summing to 1"):
        ie.split_students(ratings, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="no student|students have"):
        ie.split_students(ratings, min_ratings=200, max_ratings=300)


def test_tasks_query_and_support_never_overlap(ratings, split):
    tasks = ie.make_tasks(ratings, split.test, n_query=10, seed=3)
    for s, q, pool in zip(tasks.students, tasks.query, tasks.pool):
        assert len(q) == 10 and not set(q) & set(pool)
        own = set(np.nonzero(ratings["student"].to_numpy() == s)[0])
        assert set(q) | set(pool) == own  # all of the student's ratings, nobody else's
    sweep = tasks.with_pool_at_least(10)
    for k_small, k_big in ((1, 3), (3, 5), (5, 10)):  # nested supports
        for a, b in zip(sweep.support(k_small), sweep.support(k_big)):
            assert np.array_equal(a, b[:k_small])
    with pytest.raises(ValueError, match="k_shot=5"):
        tasks.support(5)  # a 13-rating student has only 3 non-query ratings
    with pytest.raises(ValueError, match="k_shot must be >= 1"):
        tasks.support(0)


def test_task_batch_shapes_and_masks(ratings, split):
    tasks = ie.make_tasks(ratings, split.validation[:7], seed=0)
    batch = ie.task_batch(ratings, tasks, k_shot=None)
    assert batch.x_query.shape == (7, 10, 5) and batch.y_query.shape == (7, 10)
    assert batch.support_mask.sum(1).tolist() == [len(p) for p in tasks.pool]
    x, y = ie.feature_tensors(ratings)
    first = tasks.pool[0]
    assert torch.equal(batch.x_support[0, :len(first)], x[first])
    assert torch.equal(batch.y_support[0, :len(first)], y[first])


def test_sampler_shapes_and_bad_input(ratings, split):
    sample = ie.student_task_sampler(ratings, split.train, n_tasks=16, k_shot="random")
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        b = sample(g)
        assert b.x_query.shape == (16, 10, 5)
        assert (b.support_mask.sum(1) >= 1).all()
    fixed = ie.student_task_sampler(ratings, split.train, n_tasks=4, k_shot=3)(g)
    assert fixed.x_support.shape == (4, 3, 5) and fixed.support_mask.all()
    with pytest.raises(ValueError, match="k_shot must be"):
        ie.student_task_sampler(ratings, split.train, 4, k_shot=0)
    with pytest.raises(ValueError, match="n_query"):
        ie.student_task_sampler(ratings, split.train, 4, k_shot=5)  # 13-rating students are too short


def test_sampler_tasks_are_whole_training_students(ratings, split):
    """Each sampled task holds exactly one training student's ratings (with k_shot="all")."""
    students = split.train[:5]
    sample = ie.student_task_sampler(ratings.reset_index(drop=True), students, n_tasks=8, k_shot="all")
    b = sample(torch.Generator().manual_seed(1))
    lecturer_sets = {int(s): set(ratings.loc[ratings.student == s, "lecturer"]) for s in students}
    for i in range(8):
        lect = set(b.x_query[i, :, 0].tolist()) | set(b.x_support[i][b.support_mask[i], 0].tolist())
        owners = [s for s, ls in lecturer_sets.items() if lect <= ls]
        assert owners, "a task mixes ratings of several students"
        n_real = int(b.support_mask[i].sum()) + 10
        assert n_real == len(lecturer_sets[owners[0]])

def test_prepared_tasks_never_leak_test_students_into_training(ratings):
    data = ie.prepare_tasks(seed=0, ratings=ratings)
    train_students = set(data.train["student"])
    assert train_students == set(data.split.train.tolist())
    assert not train_students & set(data.test.students.tolist())
    assert not train_students & set(data.validation.students.tolist())
    sweep = data.tasks("test", 10)
    assert set(sweep.students) <= set(data.test.students) and all(len(p) >= 10 for p in sweep.pool)
    assert len(data.tasks("test", None)) == len(data.split.test)

