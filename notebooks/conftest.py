"""Memory budget of the notebooks under nbval: each notebook's peak kernel memory, checked against Binder's 2 GB.

While nbval runs a notebook top to bottom, a thread samples the memory of the kernel process and of
every process it started (psutil, every 0.2 s) and keeps the peak: the sum over the process tree, so a
worker or server a notebook starts counts too. Each process counts its PSS (proportional set size: a
page shared by n processes counts 1/n in each), so the sum counts every page once, as Binder's
container limit does; where the OS has no PSS, RSS (which errs on the safe side). The notebook's last
cell fails if the peak is over the budget (``NOTEBOOK_MEMORY_BUDGET_GB``, default 2; no notebook is
exempt: chapter 08 forks its two distributed workers from one process so that they share PyTorch's
memory). Every figure is written to build/notebook_memory.json (merged with earlier runs) and printed at the end of the session; README quotes results/notebook_memory.json.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest

try:
    from nbval.plugin import IPyNbCell
except ImportError:  # nbval is a declared dependency; without it there are no notebook items anyway
    IPyNbCell = ()

BUDGET_BYTES = float(os.environ.get("NOTEBOOK_MEMORY_BUDGET_GB", "2")) * 1e9
REPORT = Path(__file__).resolve().parents[1] / "build" / "notebook_memory.json"
GIB = 1024 ** 3
FULL_INFO = hasattr(psutil.Process, "memory_full_info") and os.path.exists("/proc/self/smaps_rollup")


class PeakRSS:
    """Samples the memory (PSS, else RSS) of a process and its descendants in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.process, self.interval_s, self.peak = psutil.Process(pid), interval_s, 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def measure(p: psutil.Process) -> int:
        """PSS where the OS reports it (Linux), else RSS.

        PSS (proportional set size) charges a page shared by n processes 1/n to each, so the sum over
        the process tree counts every page once, as a container's memory limit (Binder's 2 GB) does;
        summing RSS would count the PyTorch libraries that the kernel and its workers share once per process.
        """
        info = p.memory_full_info() if FULL_INFO else p.memory_info()
        return getattr(info, "pss", info.rss)

    def sample(self) -> int:
        total = 0
        try:
            for p in [self.process, *self.process.children(recursive=True)]:
                try:
                    total += self.measure(p)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval_s)

    def stop(self) -> int:
        self.peak = max(self.peak, self.sample())
        self._stop.set()
        self._thread.join()
        return self.peak


_samplers: dict[str, PeakRSS] = {}
_last_cell: dict[str, str] = {}
_figures: dict[str, dict] = {}


def kernel_pid(cell) -> int | None:
    """The process id of the kernel nbval started for this cell's notebook (None if unknown)."""
    km = getattr(getattr(cell.parent, "kernel", None), "km", None)
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return getattr(process, "pid", None)


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if isinstance(item, IPyNbCell):
            _last_cell[str(item.path)] = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not isinstance(item, IPyNbCell):
        return (yield)
    name = Path(item.path).name
    if name not in _samplers and (pid := kernel_pid(item)) is not None:
        _samplers[name] = PeakRSS(pid)
    try:
        return (yield)
    finally:
        if _last_cell.get(str(item.path)) == item.nodeid and name in _samplers:
            finish(name)


def finish(name: str) -> None:
    sampler = _samplers[name]
    peak = sampler.stop()
    budget = BUDGET_BYTES
    _figures[name] = {"peak_rss_bytes": peak, "peak_rss_gib": round(peak / GIB, 3),
                      "wall_s": round(time.monotonic() - sampler.started, 1), "budget_bytes": budget}
    save()
    if peak > budget:
        raise AssertionError(f"{name} peaked at {peak / 1e9:.2f} GB of kernel memory (PSS of the kernel and its "
                             f"child processes), over the {budget / 1e9:.1f} GB budget (Binder gives about 2 GB): "
                             "free large tensors/data frames after use (del x; gc.collect()) or load less data")


def save() -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    REPORT.write_text(json.dumps({**old, **_figures}, indent=1, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter) -> None:
    if not _figures:
        return
    terminalreporter.section("notebook peak kernel memory (PSS, kernel + children)")
    for name, fig in sorted(_figures.items()):
        flag = "  OVER BUDGET" if fig["peak_rss_bytes"] > fig["budget_bytes"] else ""
        terminalreporter.write_line(f"{name:55s} {fig['peak_rss_gib']:6.2f} GiB  {fig['wall_s']:7.1f} s{flag}")
    terminalreporter.write_line(f"(written to {REPORT})")
