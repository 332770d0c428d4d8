"""Where the time and the memory of a meta-iteration go, measured with torch.profiler.

Derived in chapter 08 (Scaling meta-training), sections 1 and 3.

* `profile_phases` runs a training step several times under ``torch.profiler`` and reports the
  milliseconds spent in each phase the step marks with ``torch.profiler.record_function`` (e.g.
  "sample tasks", "meta-gradient", "optimizer step"), plus what no phase covers (Python overhead
  between them), and the profiler itself for the operator table.
* `peak_memory` runs a function once and reports the peak of the memory torch allocated while it
  ran: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the running sum of the profiler's
  allocation and free events (``profile_memory=True``), which counts the tensors torch allocates and
  nothing else (no allocator caching, no Python objects).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["profile_phases", "peak_memory"]

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the profiler's start/stop log lines out of notebooks


def _activities(device: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def profile_phases(step: Callable[[], Any], phases: Sequence[str], iterations: int = 20,
                   device: torch.device | str = "cpu") -> tuple[pd.DataFrame, profile]:
    """ms per iteration of each phase of ``step`` (marked with ``record_function(name)``) and the rest.

    Returns a table with one row per phase plus "other (Python between phases)" and "total", with
    ``ms_per_iter`` and ``share`` (of the total), and the profiler (``prof.key_averages().table()``
    lists the operators). Run a few warm-up steps first: the first calls include one-off costs.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    device = torch.device(device)
    with profile(activities=_activities(device)) as prof:
        t0 = time.perf_counter()
        for _ in range(iterations):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall_ms = 1e3 * (time.perf_counter() - t0) / iterations
    found = {e.key: e.cpu_time_total / 1e3 / iterations for e in prof.key_averages() if e.key in phases}
    missing = [p for p in phases if p not in found]
    if missing:
        raise ValueError(f"the step never entered the phases {missing}; mark them with "
                         "torch.profiler.record_function(name)")
    rows = [{"phase": p, "ms_per_iter": found[p]} for p in phases]
    rows.append({"phase": "other (Python between phases)", "ms_per_iter": max(wall_ms - sum(found.values()), 0.0)})
    table = pd.DataFrame(rows)
    table["share"] = table["ms_per_iter"] / table["ms_per_iter"].sum()
    total = pd.DataFrame([{"phase": "total", "ms_per_iter": wall_ms, "share": 1.0}])
    return pd.concat([table, total], ignore_index=True), prof


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> tuple[Any, int]:
    """``(fn(), peak bytes torch allocated during the call above what was allocated before it)``."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return out, int(torch.cuda.max_memory_allocated() - base)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return out, int(peak)
