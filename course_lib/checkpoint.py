"""Checkpoints that survive a crash: atomic writes, safe loads, resume from the last step.

Derived in chapter 08 (Scaling meta-training), section 6. A long meta-training run (the paper's
70,000 iterations, or a national testing agency's millions of learners) will be interrupted; a
checkpoint holds everything needed to continue as if nothing had happened:

* the meta-parameters θ (``model``), the outer optimiser's state (Adam's moments),
* the meta-iteration ``step`` reached,
* the random number generators' states (torch's global generator and the task sampler's).

`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk and renames it
over the old checkpoint: a crash during the write leaves the previous checkpoint intact, never a
half-written one. `load_checkpoint` uses ``torch.load(weights_only=True)``, which refuses to run
code hidden in a pickle (a checkpoint downloaded from elsewhere cannot execute anything).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng"]

REQUIRED = ("step", "model", "optimizer", "rng")


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename); returns the path.

    ``state`` must hold ``step`` (int), ``model`` (a state dict), ``optimizer`` (a state dict) and
    ``rng`` (from `capture_rng`); other plain entries (a config dict) are kept. Derived in chapter 08,
    section 6.
    """
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"a checkpoint needs {list(REQUIRED)}; missing {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # the previous checkpoint stays as it was
        raise
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` with ``torch.load(weights_only=True)``.

    A missing file, a file that is not a checkpoint, or one that needs arbitrary code to unpickle
    gets an error that says what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; start without --resume, or point --checkpoint "
                                "at the file an earlier run wrote")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{path} could not be loaded safely (weights_only=True): {type(err).__name__}: "
                         f"{str(err)[:300]}. It is corrupted or was not written by save_checkpoint; delete it "
                         "and restart from scratch") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise ValueError(f"{path} is not a course_lib checkpoint (it needs the keys {list(REQUIRED)})")
    return state


def capture_rng(generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The states of torch's global CPU generator and of ``generator`` (e.g. the task sampler's)."""
    rng = {"torch": torch.get_rng_state()}
    if generator is not None:
        rng["sampler"] = generator.get_state()
    return rng


def restore_rng(rng: Mapping[str, torch.Tensor], generator: torch.Generator | None = None) -> None:
    """Put back the states saved by `capture_rng` (the global generator and, if given, ``generator``)."""
    torch.set_rng_state(rng["torch"])
    if generator is not None:
        if "sampler" not in rng:
            raise ValueError("the checkpoint holds no sampler state; it was saved without a generator")
        generator.set_state(rng["sampler"])
