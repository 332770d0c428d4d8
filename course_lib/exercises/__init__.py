"""Check functions for the chapters' exercises: one module per chapter (``ch01``, ``ch02``, ...).

Every check prints a clear PASS message or raises ``ExerciseError`` with a hint of what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ExerciseError(AssertionError):
    """Raised by a check when the reader's answer is wrong; the message says what to look at."""


def passed(message: str) -> bool:
    """Print the course's pass message and return True."""
    print(f"✅ PASS: {message}")
    return True


def fail(message: str) -> None:
    """Raise ``ExerciseError`` with the course's fail marker."""
    raise ExerciseError(f"❌ Not yet: {message}")


def todo(what: str) -> bool:
    """Report an exercise that is not filled in yet (the placeholder ``None``); returns False."""
    print(f"⏳ Not filled in yet: {what}")
    return False


def call(fn: Callable[..., Any], what: str, *args: Any) -> Any:
    """Call the reader's function; a crash becomes a clear failure message, not a traceback.

    A function that still raises ``NotImplementedError`` counts as not filled in (returns None).
    """
    try:
        return fn(*args)
    except NotImplementedError:
        return None
    except Exception as exc:  # noqa: BLE001 - any crash is the reader's answer to report
        fail(f"calling your function on {what} raised {type(exc).__name__}: {exc}")
