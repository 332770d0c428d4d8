"""Every exercise in a chapter notebook: the reader's cell, a hint that can be revealed first, and
exactly one worked solution in a code cell tagged ``solution`` (the tag the instructor kit strips)."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEADING = re.compile(r"^###\s+Exercise\s+(\d+)", re.MULTILINE)


def _exercises(nb) -> list[tuple[int, int]]:
    return [(i, int(m.group(1))) for i, c in enumerate(nb.cells)
            if c.cell_type == "markdown" and (m := HEADING.search(c.source))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_each_exercise_has_a_hint_then_one_solution_cell(path):
    nb = nbformat.read(path, as_version=4)
    exercises = _exercises(nb)
    numbers = [n for _, n in exercises]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: exercises numbered {numbers}"
    solutions = [i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) == len(exercises), (f"{path.name}: {len(exercises)} exercises but "
                                              f"{len(solutions)} cells tagged 'solution'")
    bounds = [i for i, _ in exercises] + [len(nb.cells)]
    for (start, n), end in zip(exercises, bounds[1:]):
        inside = [i for i in solutions if start < i < end]
        assert len(inside) == 1, f"{path.name}, exercise {n}: {len(inside)} solution cells, expected 1"
        sol = inside[0]
        assert nb.cells[sol].cell_type == "code", f"{path.name}, exercise {n}: the solution must be a code cell"
        assert nb.cells[start + 1].cell_type == "code", f"{path.name}, exercise {n}: no cell for the answer"
        hint = [c for c in nb.cells[start + 1:sol] if c.cell_type == "markdown" and "Hint" in c.source]
        assert hint, f"{path.name}, exercise {n}: no hint cell before the solution"
    for i, c in enumerate(nb.cells):
        assert not re.search(r"<summary>[^<]*Solution", c.source), (
            f"{path.name}, cell {i}: a <details> solution block duplicates the solution cell; remove it")


def test_chapters_00_to_07_have_at_least_three_exercises():
    for path in NOTEBOOKS:
        if int(path.stem[:2]) <= 7:
            assert len(_exercises(nbformat.read(path, as_version=4))) >= 3, path.name
