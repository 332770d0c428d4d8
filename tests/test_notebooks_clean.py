"""Every committed notebook is stored without outputs, is valid nbformat v4 and runs on python3."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no .ipynb files"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name} is stored with outputs or execution counts in cells {dirty}: "
                       "run `make strip` (python tools/strip_notebooks.py notebooks) before committing")
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state: run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_v4_python3(path: Path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4, f"{path.name} is nbformat v{nb.nbformat}; the course uses v4"
    nbformat.validate(nb)
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{path.name} uses kernel {kernel!r}; set its kernelspec to python3"


def test_strip_tool_removes_outputs_and_keeps_sources(tmp_path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("strip_notebooks", ROOT / "tools" / "strip_notebooks.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"},
                                            "widgets": {"state": {}}})
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    code.metadata["execution"] = {"iopub.status.busy": "2025-01-01"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code]
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, path)

    assert tool.main(["--check", str(path)]) == 1
    assert tool.main([str(path)]) == 0
    clean = nbformat.read(path, as_version=4)
    assert clean.cells[1].outputs == [] and clean.cells[1].execution_count is None
    assert clean.cells[1].source == "print(1)" and clean.cells[0].source == "# Title"
    assert "execution" not in clean.cells[1].metadata and "widgets" not in clean.metadata
    assert tool.main(["--check", str(path)]) == 0
