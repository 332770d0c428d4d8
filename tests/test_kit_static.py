"""tools/kit/static.py and site.py: executed outputs become static HTML; the book builds offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

from tools.kit import static

VIEW, STATE = static.WIDGET_VIEW, static.WIDGET_STATE


def _model(name: str, module: str = "@jupyter-widgets/controls", **state) -> dict:
    return {"model_name": name, "model_module": module, "model_module_version": "2.0.0", "state": state}


def _executed_notebook() -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: a plotly figure, a slider+FigureWidget box, a progress bar."""
    nb = nbformat.v4.new_notebook()
    figure = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}], "layout": {"title": {"text": "t"}}}
    plot = nbformat.v4.new_code_cell("fig.show()")
    plot.outputs = [nbformat.v4.new_output("display_data", data={static.PLOTLY: figure, "text/plain": "Figure"})]
    box = nbformat.v4.new_code_cell("VBox([slider, fw])")
    box.outputs = [nbformat.v4.new_output("display_data", data={VIEW: {"model_id": "box", "version_major": 2,
                                                                       "version_minor": 0}, "text/plain": "VBox"})]
    bar = nbformat.v4.new_code_cell("for _ in tqdm(range(3)): pass")
    bar.outputs = [nbformat.v4.new_output("display_data", data={VIEW: {"model_id": "bar"}, "text/plain": "bar"})]
    capture = nbformat.v4.new_code_cell(static.CAPTURE_FIGURES)
    capture.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                              text=static.FIGURES_MARKER + '{"fw": {"data": [{"type": "bar", '
                                              '"x": ["a"], "y": [7]}], "layout": {}}}\n')]
    nb.cells = [plot, box, bar, capture]
    nb.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": {
        "box": _model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_fw", "IPY_MODEL_odd"]),
        "slider": _model("FloatSliderModel", description="ability θ", value=1.5, min=-4, max=4, step=0.1),
        "fw": _model("AnyModel", module="anywidget", _widget_data=[]),
        "odd": _model("ColorPickerModel", value="#ff0000"),
        "bar": _model("HBoxModel", children=["IPY_MODEL_label", "IPY_MODEL_progress"]),
        "label": _model("HTMLModel", value="training: 100%"),
        "progress": _model("FloatProgressModel", value=3.0, max=3.0),
    }}}
    return nb


def test_make_static_turns_figures_and_widgets_into_html():
    nb = static.make_static(_executed_notebook())
    assert "widgets" not in nb.metadata, "saved widget state would make pages load a widget manager"
    assert len(nb.cells) == 3, "the capture cell is removed"
    figure, box, bar = (cell.outputs[0].data for cell in nb.cells)
    assert static.PLOTLY not in figure and "Plotly.newPlot" in figure["text/html"]
    assert "<script src" not in figure["text/html"], "plotly.js comes from the page, not from each figure"
    assert VIEW not in box and VIEW not in bar
    html = box["text/html"]
    assert 'type="range" disabled min="-4" max="4" step="0.1" value="1.5"' in html and "ability θ" in html
    assert '"type":"bar"' in html.replace(" ", "") and "Plotly.newPlot" in html, "FigureWidget drawn from the capture"
    assert "[ColorPicker widget]" in html, "an unknown widget is named, not dropped"
    assert '<progress value="3.0" max="3.0">' in bar["text/html"] and "training: 100%" in bar["text/html"]


def test_selection_and_dropdown_show_the_chosen_label():
    states = {"s": _model("SelectionSliderModel", description="K", _options_labels=["1", "5", "10"], index=1),
              "d": _model("DropdownModel", description="model", _options_labels=["MAML", "Reptile"], index=1)}
    assert "<output>5</output>" in static.widget_html("s", states, {})
    assert "<option selected>Reptile</option>" in static.widget_html("d", states, {})
    assert static.widget_html("missing", states, {}) == ""


def test_a_notebook_without_capture_cell_keeps_its_cells():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    assert static.captured_figures(nb) == {} and len(nb.cells) == 1


@pytest.mark.skipif(not importlib.util.find_spec("myst_nb"), reason="the `kit` extra is not installed (make kit)")
def test_site_builds_offline_from_executed_notebooks(tmp_path: Path):
    from tools.kit.assets import external_assets
    from tools.kit.site import build_site

    src = tmp_path / "executed"
    src.mkdir()
    nb = static.make_static(_executed_notebook())
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A chapter\n\nThe inner step $\\phi = \\theta - \\alpha g$."))
    nbformat.write(nb, src / "01_chapter.ipynb")
    index = build_site(src, tmp_path / "site")
    page = (tmp_path / "site" / "notebooks" / "01_chapter.html").read_text(encoding="utf-8")
    assert index.is_file() and "01_chapter.html" in index.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in page and "_static/plotly.min.js" in page and "_static/mathjax/MathJax.js" in page
    assert (tmp_path / "site" / "_static" / "mathjax" / "MathJax.js").is_file()
    assert external_assets(tmp_path / "site") == []
    with pytest.raises(FileNotFoundError, match="tools.kit execute"):
        build_site(tmp_path / "nothing", tmp_path / "site2")


def test_execute_runs_once_and_snapshots_a_figure_widget(tmp_path: Path):
    """End to end with a real kernel: the FigureWidget's final traces and the slider's value survive."""
    from tools.kit.execute import execute_all, stale

    src, out = tmp_path / "notebooks", tmp_path / "executed"
    src.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(
        "import ipywidgets as w, plotly.graph_objects as go\n"
        "fig = go.FigureWidget()\nslider = w.FloatSlider(description='α', min=0, max=1, value=0.25)\n"
        "display(w.VBox([slider, fig]))\n"
        "fig.add_scatter(x=[0, 1], y=[5, 6], name='after display')  # a callback's update, after display\n"
        "slider.value = 0.5\ngo.Figure(go.Bar(x=['a'], y=[1])).show()")]
    nbformat.write(nb, src / "01_t.ipynb")
    assert stale(src / "01_t.ipynb", out / "01_t.ipynb")
    with pytest.raises(FileNotFoundError, match="no notebook"):
        execute_all(src, out, only=["99_missing"])
    timings = execute_all(src, out, timeout=120)
    assert list(timings) == ["01_t.ipynb"] and not stale(src / "01_t.ipynb", out / "01_t.ipynb")
    assert execute_all(src, out) == {}, "an up-to-date notebook is not executed again"
    done = nbformat.read(out / "01_t.ipynb", as_version=4)
    assert len(done.cells) == 1 and "widgets" not in done.metadata
    box, bar = (o.data["text/html"] for o in done.cells[0].outputs if "data" in o)
    assert "after display" in box and 'value="0.5"' in box, "the widget is shown in its final state"
    assert "Plotly.newPlot" in bar and static.PLOTLY not in done.cells[0].outputs[1].data
