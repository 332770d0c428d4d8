"""Check functions for the chapters' exercises: one module per chapter (``ch01``, ``ch02``, ...).

Every check prints a clear PASS message or raises ``ExerciseError`` with a hint of what to change.
"""

from __future__ import annotations


class ExerciseError(AssertionError):
    """Raised by a check when the reader's answer is wrong; the message says what to look at."""


def passed(message: str) -> bool:
    """Print the course's pass message and return True."""
    print(f"✅ PASS: {message}")
    return True


def fail(message: str) -> None:
    """Raise ``ExerciseError`` with the course's fail marker."""
    raise ExerciseError(f"❌ Not yet: {message}")
