"""Learner state in SQLite (standard library, WAL mode): every answer is a row, so a restart loses none.

Derived in chapter 10, section 6. The state of a learner is the list of their answers in the order
they arrived; predictions are recomputed from it (in one pass by the student). `add_answer` inserts
the answer and reads the learner's answers back in one ``BEGIN IMMEDIATE`` transaction, so two
answers of the same learner arriving at once are both stored and each sees a consistent list.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["LearnerStore", "LEARNER_ID"]

#: What a learner id may look like (it appears in URLs): letters, digits, '-', '_', '.', 1-64 characters.
LEARNER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    learner TEXT NOT NULL,
    item INTEGER NOT NULL,
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_learner ON answers (learner, id);
"""


class LearnerStore:
    """Answers of every learner in one SQLite file (WAL journal), one connection per thread.

    ``synchronous="NORMAL"`` (default) keeps every committed answer across a crash or restart of
    the server process; ``"FULL"`` also across a power cut, at the cost of an fsync per answer.
    """

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path, self.synchronous = Path(path), synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @staticmethod
    def check_id(learner: str) -> str:
        """Return ``learner`` if it is a valid id, else raise ``ValueError`` saying what is allowed."""
        if not isinstance(learner, str) or not LEARNER_ID.match(learner):
            raise ValueError(f"learner id {learner!r} is not valid: use 1-64 letters, digits, '-', '_' or '.'")
        return learner

    def add_answer(self, learner: str, item: int, correct: int) -> list[tuple[int, int]]:
        """Store one answer; return all of the learner's answers ``[(item, correct), ...]`` in order."""
        self.check_id(learner)
        if correct not in (0, 1):
            raise ValueError(f"correct must be 0 or 1, got {correct!r}")
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO answers (learner, item, correct, at) VALUES (?, ?, ?, ?)",
                         (learner, int(item), int(correct), time.time()))
            rows = conn.execute("SELECT item, correct FROM answers WHERE learner = ? ORDER BY id",
                                (learner,)).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return rows

    def answers(self, learner: str) -> list[tuple[int, int]]:
        """All answers of ``learner`` in the order they arrived (empty for an unknown learner)."""
        self.check_id(learner)
        return self._conn().execute("SELECT item, correct FROM answers WHERE learner = ? ORDER BY id",
                                    (learner,)).fetchall()

    def n_learners(self) -> int:
        """How many learners have answered at least once."""
        return int(self._conn().execute("SELECT COUNT(DISTINCT learner) FROM answers").fetchone()[0])

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
