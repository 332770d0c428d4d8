"""Pick the compute device and seed every random number generator.

Derived in chapter 00 (Welcome and setup). Every notebook starts with::

    from course_lib.device import get_device, seed_everything
    device = get_device()
    seed_everything(0)
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

_VALID = ("auto", "cpu", "cuda", "mps")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (or the ``COURSE_DEVICE`` environment variable) forces one of
    ``"auto" | "cpu" | "cuda" | "mps"``; asking for a device that is not there raises a
    ``ValueError`` that says what is available.
    """
    from_env = prefer is None and bool(os.environ.get("COURSE_DEVICE"))
    choice = (prefer or os.environ.get("COURSE_DEVICE") or "auto").lower()
    if choice not in _VALID:
        where = "the COURSE_DEVICE environment variable" if from_env else "get_device()"
        raise ValueError(f"device must be one of {_VALID}, got {choice!r} from {where}")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but torch.cuda.is_available() is False; "
                         "use get_device('auto') or 'cpu'")
    if choice == "mps" and not has_mps:
        raise ValueError("MPS was requested but is not available on this machine; use 'auto' or 'cpu'")
    return torch.device(choice)


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every GPU) and return a seeded CPU ``torch.Generator``.

    With ``deterministic=True`` torch also refuses non-deterministic GPU kernels (slower on CUDA;
    CPU results are deterministic for a fixed seed either way).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def describe(device: torch.device | None = None) -> dict[str, str]:
    """A small report of the device: its name and, for CUDA, the GPU model and memory."""
    device = device or get_device()
    info = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = f"{props.total_memory / 2**30:.1f}"
    info["cpu_threads"] = str(torch.get_num_threads())
    return info


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch's CPU kernels on ``n`` threads (None: leave as is).

    Meta-learning on small networks (the 1-40-40-1 sinusoid regressor, IRT models) runs many tiny
    kernels; on a busy or small CPU, more than one thread per kernel costs more in synchronisation
    than it gains, sometimes 10x. The experiments use one thread on the CPU.
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"n must be >= 1 threads, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
