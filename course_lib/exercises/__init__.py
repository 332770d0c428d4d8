"""Check functions for the chapters' exercises: one module per chapter (``ch01``, ``ch02``, ...).

Every check prints a clear PASS message or raises ``ExerciseError`` with a hint of what to change.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class ExerciseError(AssertionError):
    """Raised by a check when the reader's answer is wrong; the message says what to look at."""


def fresh_rng() -> np.random.Generator:
    """A NumPy generator seeded afresh at every call, so a check's inputs cannot be typed in from the notebook."""
    return np.random.default_rng(random.SystemRandom().randrange(2**63))


def fresh_generator() -> torch.Generator:
    """A torch generator seeded afresh at every call (the torch twin of `fresh_rng`)."""
    return torch.Generator().manual_seed(random.SystemRandom().randrange(1, 2**63))


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


def _describe(value: Any) -> str:
    """A short description of an answer for a failure message (type, and shape or value)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def as_array(value: Any, what: str, expect: str = "numbers (a number, an array or a tensor)") -> np.ndarray:
    """The reader's answer as a float64 NumPy array; anything but numbers is a clear failure.

    Accepts numbers, lists, NumPy arrays and torch tensors (detached); a string, a dict, a function
    or a ragged list fails with "``what`` should be ``expect``" and what was returned, instead of
    NumPy's conversion error.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    array = None
    if not isinstance(value, (str, bytes, dict)) and not callable(value):
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - a ragged list, an object NumPy cannot read
            array = None
    if array is None or array.dtype.kind not in "biuf":
        fail(f"{what} should be {expect}; got {_describe(value)}")
    return array.astype(np.float64)


def as_tensor(value: Any, what: str, dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """The reader's answer as a detached torch tensor of ``dtype`` (None keeps the answer's own dtype).

    Non-numeric answers fail as in `as_array`, with ``what`` in the message.
    """
    array = as_array(value, what)
    if dtype is None:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return torch.as_tensor(array, dtype=dtype)


def as_number(value: Any, what: str) -> float:
    """The reader's answer as one float: a number, or an array/tensor with exactly one entry."""
    array = as_array(value, what, "one number (a float or a 0-d tensor)")
    if array.size != 1:
        fail(f"{what} should be one number; got {_describe(value)}")
    return float(array.reshape(-1)[0])


def as_index(value: Any, what: str) -> int:
    """The reader's answer as one whole number (an index or a count); 2.5 or a string is a clear failure."""
    number = as_number(value, what)
    if not math.isfinite(number) or number != int(number):
        fail(f"{what} should be a whole number (an index); got {number!r}")
    return int(number)
