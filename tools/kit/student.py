"""Learner versions of the chapters: the same notebooks without their worked solutions.

A solution is a cell tagged ``solution`` (exactly one per exercise; issue 14). The learner version
drops those cells and the one-line markdown cell that announces a solution right above one
("**Solution** (hidden cell below)" or a ``<details><summary>Solution`` block), because with the
solution gone that announcement would point at nothing. Every other cell, the exercise prompts and
the ``check(...)`` cells included, is kept byte for byte.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

SOLUTION_TAG = "solution"
# A markdown cell that only announces the solution below it (bold "Solution" or a <details> block).
_ANNOUNCEMENT = re.compile(r"^\s*(\*\*Solution\b|<details>\s*<summary>\s*Solution\b)", re.IGNORECASE)


def has_tag(cell: nbformat.NotebookNode, tag: str) -> bool:
    """True if ``cell`` carries ``tag`` in its metadata."""
    return tag in cell.get("metadata", {}).get("tags", [])


def is_announcement(cell: nbformat.NotebookNode) -> bool:
    """True for a markdown cell whose only job is to introduce the solution that follows it."""
    return cell.cell_type == "markdown" and bool(_ANNOUNCEMENT.match(cell.source))


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return a copy of ``nb`` without its ``solution`` cells and their announcements."""
    cells = nb.cells
    drop = {i for i, cell in enumerate(cells) if has_tag(cell, SOLUTION_TAG)}
    drop |= {i - 1 for i in list(drop) if i > 0 and is_announcement(cells[i - 1])}
    out = nbformat.from_dict(nb)
    out.cells = [nbformat.from_dict(c) for i, c in enumerate(cells) if i not in drop]
    return out


def build_student(src: Path, out: Path) -> list[Path]:
    """Write the learner version of every notebook in ``src`` to ``out``; return the files written.

    Raises FileNotFoundError if ``src`` holds no notebook.
    """
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no .ipynb file in {src}: pass the folder that holds the chapters")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        target = out / path.name
        nbformat.write(student_version(nb), target)
        written.append(target)
    return written
