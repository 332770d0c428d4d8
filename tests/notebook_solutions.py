"""The worked solutions stored in a chapter notebook's ``solution``-tagged cells, as callables.

The exercise tests check that the solution a reader would reveal passes its check: they take the
functions from the notebook itself (not from a copy in the test), so an edited solution is tested.
Only the ``def`` statements (and imports) of the solution cells run; the cell's own check call and
anything that needs the notebook's data do not.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import torch
import torch.nn.functional as F

from course_lib import metrics

ROOT = Path(__file__).resolve().parents[1]


def notebook_solutions(chapter: str) -> dict[str, Any]:
    """``{name: function}`` for every function defined in the solution cells of notebook ``chapter`` ("02")."""
    path = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    namespace: dict[str, Any] = {"np": np, "torch": torch, "F": F, "math": math, "metrics": metrics}
    functions: list[str] = []
    for cell in nb.cells:
        if "solution" not in cell.metadata.get("tags", []):
            continue
        tree = ast.parse(cell.source)
        kept = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
        functions += [n.name for n in kept if isinstance(n, ast.FunctionDef)]
        exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in functions}
