"""course_lib.serving.state: the SQLite (WAL) learner store, in process."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from course_lib.serving.state import LearnerStore


def test_answers_come_back_in_order_and_survive_a_new_store(tmp_path):
    store = LearnerStore(tmp_path / "s.sqlite3")
    assert store.answers("ada") == [] and store.n_learners() == 0
    assert store.add_answer("ada", 3, 1) == [(3, 1)]
    assert store.add_answer("ada", 7, 0) == [(3, 1), (7, 0)]
    store.add_answer("bob", 3, 0)
    store.close()
    again = LearnerStore(tmp_path / "s.sqlite3")             # a restart: a new process opens the same file
    assert again.answers("ada") == [(3, 1), (7, 0)] and again.answers("bob") == [(3, 0)] and again.n_learners() == 2
    mode = sqlite3.connect(tmp_path / "s.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_concurrent_writers_lose_nothing_and_each_sees_a_consistent_prefix(tmp_path):
    store = LearnerStore(tmp_path / "c.sqlite3")
    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(lambda i: store.add_answer("crowd", i, i % 2), range(200)))
    final = store.answers("crowd")
    assert sorted(final) == sorted((i, i % 2) for i in range(200))
    assert sorted(len(s) for s in seen) == list(range(1, 201))  # every insert saw its own, distinct count
    assert all(s == final[:len(s)] for s in seen)               # ... and a prefix of the final order


@pytest.mark.parametrize("learner", ["", "a" * 65, "../etc", "two words", None])
def test_bad_learner_ids_are_refused_with_the_rule(tmp_path, learner):
    store = LearnerStore(tmp_path / "b.sqlite3")
    with pytest.raises(ValueError, match="1-64 letters, digits"):
        store.add_answer(learner, 1, 1)


def test_answers_other_than_zero_or_one_never_reach_the_database(tmp_path):
    store = LearnerStore(tmp_path / "z.sqlite3")
    with pytest.raises(ValueError, match="correct must be 0 or 1"):
        store.add_answer("ada", 1, 2)
    with pytest.raises(ValueError, match="synchronous"):
        LearnerStore(tmp_path / "y.sqlite3", synchronous="OFF")
    assert store.answers("ada") == []
