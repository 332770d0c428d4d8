"""Run each chapter once into ``build/executed/``; the slides and the site are built from these runs.

One execution per notebook serves every product (issue 14: "reusing one execution per notebook").
A notebook is re-run only when its source is newer than its executed copy. The run uses the same
kernel and working folder as JupyterLab (``notebooks/``), with two settings for static output:

- ``PLOTLY_RENDERER=plotly_mimetype``: figures are stored as plotly JSON, not as HTML that pulls
  plotly.js from a CDN; :mod:`tools.kit.static` turns them into HTML that uses a local plotly.js;
- ``store_widget_state``: the final state of every widget is saved, so :mod:`tools.kit.static`
  can draw each widget (sliders, a FigureWidget, progress bars) as it was when the run ended.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tools.kit.static import CAPTURE_FIGURES, make_static


def stale(source: Path, executed: Path) -> bool:
    """True if ``executed`` is missing or older than ``source``."""
    return not executed.exists() or executed.stat().st_mtime < source.stat().st_mtime


def execute(source: Path, target: Path, timeout: int = 600) -> float:
    """Execute ``source`` (cwd = its folder), make its outputs static, write ``target``; return seconds."""
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CAPTURE_FIGURES))  # popped again by make_static
    start = time.perf_counter()
    previous = os.environ.get("PLOTLY_RENDERER")
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"  # inherited by the kernel process
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(source.parent)}}).execute()
    finally:
        if previous is None:
            os.environ.pop("PLOTLY_RENDERER", None)
        else:
            os.environ["PLOTLY_RENDERER"] = previous
    seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(make_static(nb), target)
    return seconds


def execute_all(src: Path, out: Path, only: list[str] | None = None, timeout: int = 600) -> dict[str, float]:
    """Execute every stale notebook of ``src`` (or those named in ``only``) into ``out``; print timings."""
    notebooks = sorted(src.glob("*.ipynb"))
    if only:
        unknown = set(only) - {p.name for p in notebooks} - {p.stem for p in notebooks}
        if unknown:
            raise FileNotFoundError(f"no notebook {sorted(unknown)} in {src}")
        notebooks = [p for p in notebooks if p.name in only or p.stem in only]
    timings = {}
    for path in notebooks:
        target = out / path.name
        if not only and not stale(path, target):
            print(f"{path.name}: up to date")
            continue
        timings[path.name] = execute(path, target, timeout)
        print(f"{path.name}: executed in {timings[path.name]:.1f} s")
    return timings
