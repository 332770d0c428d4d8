"""make student: learner versions keep every exercise cell and lose every solution (tools/kit/student.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from tools.kit import student

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TAGGED = [p for p in NOTEBOOKS
          if any(student.has_tag(c, "solution") for c in nbformat.read(p, as_version=4).cells)]


def _exercise_cells(nb) -> list[str]:
    """Sources of the cells a learner works in: exercise prompts and the cells that call a check."""
    return [c.source for c in nb.cells if not student.has_tag(c, "solution") and not student.is_announcement(c)
            and (re.search(r"^#+ .*Exercise", c.source, re.M) or "YOUR CODE HERE" in c.source
                 or re.search(r"\bch\d\d\.check_", c.source))]


def _solution_lines(nb) -> set[str]:
    """Lines of solution cells that no other cell has: the text that must not survive."""
    elsewhere = {line.strip() for c in nb.cells if not student.has_tag(c, "solution") for line in c.source.splitlines()}
    return {line.strip() for c in nb.cells if student.has_tag(c, "solution") for line in c.source.splitlines()
            if len(line.strip()) > 12 and line.strip() not in elsewhere}


def _defined_names(source: str, top_level: bool) -> set[str]:
    """Names a cell binds: at module level only (``top_level``) or anywhere in it."""
    tree = _parse(source)
    nodes = tree.body if top_level else list(ast.walk(tree))
    names = {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for node in nodes:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.For)) or not top_level:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", node)]
            names |= {n.id for t in targets for n in ast.walk(t)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_some_notebooks_have_solution_tags():
    assert TAGGED, "no notebook has a cell tagged `solution`: the learner versions would equal the originals"


@pytest.mark.parametrize("path", TAGGED, ids=lambda p: p.name)
def test_student_version_drops_solutions_and_keeps_exercises(path: Path):
    nb = nbformat.read(path, as_version=4)
    learner = student.student_version(nb)
    text = "\n".join(c.source for c in learner.cells)
    assert not [c for c in learner.cells if student.has_tag(c, "solution")]
    lines = {line.strip() for line in text.splitlines()}
    survived = sorted(_solution_lines(nb) & lines)
    assert not survived, f"solution text survives in the learner version of {path.name}: {survived[:3]}"
    assert "<summary>Solution" not in text and not re.search(r"^\*\*Solution\*\*", text, re.M)
    assert _exercise_cells(learner) == _exercise_cells(nb), "an exercise cell was dropped or changed"
    kept = [c.source for c in nb.cells if not student.has_tag(c, "solution") and not student.is_announcement(c)]
    assert [c.source for c in learner.cells] == kept, "only solutions and their announcements may go"
    nbformat.validate(learner)


@pytest.mark.parametrize("path", TAGGED, ids=lambda p: p.name)
def test_no_cell_of_the_learner_version_needs_a_solution(path: Path):
    """A name defined only in a solution cell and used later would break the learner's run."""
    nb = nbformat.read(path, as_version=4)
    only_in_solutions = set().union(*(_defined_names(c.source, top_level=True) for c in nb.cells
                                      if c.cell_type == "code" and student.has_tag(c, "solution")))
    only_in_solutions -= set().union(*(_defined_names(c.source, top_level=False) for c in nb.cells
                                       if c.cell_type == "code" and not student.has_tag(c, "solution")))
    learner = student.student_version(nb)
    used = {n.id for c in learner.cells if c.cell_type == "code"
            for n in ast.walk(_parse(c.source)) if isinstance(n, ast.Name)}
    assert not only_in_solutions & used, (
        f"{path.name}: learner cells use {sorted(only_in_solutions & used)}, defined only in a solution cell")


def _parse(source: str) -> ast.AST:
    try:
        return ast.parse(source)
    except SyntaxError:
        return ast.parse("")


def test_announcement_goes_only_with_its_solution():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("### Exercise 1\nDo it."),
                nbformat.v4.new_code_cell("answer = None  # YOUR CODE HERE\nch01.check_x(answer)"),
                nbformat.v4.new_markdown_cell("**Solution** (hidden cell below)."),
                nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution"]}),
                nbformat.v4.new_markdown_cell("**Solution** of nothing: not followed by a solution cell."),
                nbformat.v4.new_code_cell("print(1)")]
    learner = student.student_version(nb)
    assert [c.source[:12] for c in learner.cells] == ["### Exercise", "answer = Non", "**Solution**", "print(1)"]
    assert len(nb.cells) == 6, "the original notebook must not be modified"


def test_build_student_writes_every_notebook(tmp_path: Path):
    written = student.build_student(ROOT / "notebooks", tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    with pytest.raises(FileNotFoundError, match="no .ipynb"):
        student.build_student(tmp_path / "empty", tmp_path / "out")
