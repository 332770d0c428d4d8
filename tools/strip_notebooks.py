"""Strip outputs, execution counts and saved widget state from notebooks, in place.

The course stores its notebooks without outputs (the outputs are produced by running them; nbval
runs every one in CI), and tests/test_notebooks_clean.py fails when a committed notebook has any.
`make strip` runs this script on notebooks/.

Usage::

    python tools/strip_notebooks.py [--check] [PATH ...]     # PATH: a notebook or a folder (default notebooks/)

With ``--check`` nothing is written; the script lists the notebooks that need stripping and exits 1.
A notebook that is already clean is not rewritten (its file and mtime stay as they are).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# Per-cell metadata that only records a run (timings from JupyterLab / nbclient, scroll state).
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
# Notebook metadata that only records a run: saved ipywidgets state.
RUN_NOTEBOOK_METADATA = ("widgets",)


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs and run records from ``nb`` in place; return True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs"):
                cell.outputs = []
                changed = True
            if cell.get("execution_count") is not None:
                cell.execution_count = None
                changed = True
        for key in RUN_METADATA:
            if key in cell.get("metadata", {}):
                del cell.metadata[key]
                changed = True
    for key in RUN_NOTEBOOK_METADATA:
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def notebooks(paths: list[Path]) -> list[Path]:
    """Expand folders into the notebooks they hold (checkpoints excluded), sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += [p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
        elif path.suffix == ".ipynb" and path.exists():
            found.append(path)
        else:
            raise SystemExit(f"{path}: not a notebook or a folder of notebooks")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "notebooks"])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if any notebook has outputs")
    args = parser.parse_args(argv)

    dirty = []
    for path in notebooks(args.paths):
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.validate(nb)
                nbformat.write(nb, path)
    verb = "needs stripping" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    if not dirty:
        print("all notebooks are clean")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
