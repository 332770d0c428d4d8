"""Executed notebooks made static: every figure and widget as plain HTML that needs no kernel or CDN.

After :mod:`tools.kit.execute` ran a chapter, its outputs still need JavaScript from elsewhere:
plotly JSON needs plotly.js, a widget view needs the Jupyter widget manager (served from a CDN by
Sphinx and nbconvert) and a live kernel. This module rewrites them:

- a plotly figure (``application/vnd.plotly.v1+json``) → a ``<div>`` drawn by the local plotly.js
  the page loads (:mod:`tools.kit.assets`); the figure stays interactive (zoom, hover);
- a widget view → its *static state*: sliders, dropdowns, check boxes and progress bars drawn
  disabled at the value they had when the run ended, boxes as flex rows/columns, and a plotly
  ``FigureWidget`` as the figure it showed at the end (its traces are captured from the kernel by
  :data:`CAPTURE_FIGURES`, because a FigureWidget's saved widget state does not hold its traces);
- the notebook's saved widget state is dropped, so no page tries to load a widget manager.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable

import nbformat
import plotly.io as pio

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY = "application/vnd.plotly.v1+json"
FIGURES_MARKER = "KIT-FIGURE-WIDGETS:"
# Run in the kernel after the last cell: the final figure of every live FigureWidget, by model id.
CAPTURE_FIGURES = f"""\
import json as _json
import plotly.graph_objects as _go
from plotly.utils import PlotlyJSONEncoder as _Encoder
from ipywidgets.widgets.widget import _instances as _widgets
print({FIGURES_MARKER!r} + _json.dumps({{_id: _w.to_plotly_json() for _id, _w in list(_widgets.items())
                                        if isinstance(_w, _go.FigureWidget)}}, cls=_Encoder))
"""
NOTE = "A snapshot of this widget when the notebook ran; open the notebook in JupyterLab to interact."


def figure_html(figure: dict) -> str:
    """A plotly figure (dict with data/layout) as a ``<div>`` + script that uses the page's plotly.js."""
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"responsive": True})


def _children(state: dict) -> list[str]:
    return [c.removeprefix("IPY_MODEL_") for c in state.get("children", [])]


def _label(state: dict) -> str:
    text = state.get("description") or ""
    return f'<label style="margin-right:.5em">{html.escape(text)}</label>' if text else ""


def _options(state: dict) -> tuple[list[str], int | None]:
    labels = [str(x) for x in state.get("_options_labels", [])]
    index = state.get("index")
    return labels, index if isinstance(index, int) else None


def _slider(state: dict) -> str:
    labels, index = _options(state)
    if labels:  # SelectionSlider: a position among labels
        shown, value, lo, hi, step = (labels[index] if index is not None else ""), index or 0, 0, len(labels) - 1, 1
    else:
        value, lo, hi, step = state.get("value"), state.get("min"), state.get("max"), state.get("step") or "any"
        shown = value
        if isinstance(value, list):  # range sliders: show both ends, draw the lower one
            shown, value = f"{value[0]} – {value[1]}", value[0]
    return (f'{_label(state)}<input type="range" disabled min="{lo}" max="{hi}" step="{step}" value="{value}">'
            f' <output>{html.escape(str(shown))}</output>')


def _select(state: dict) -> str:
    labels, index = _options(state)
    options = "".join(f'<option{" selected" if i == index else ""}>{html.escape(x)}</option>'
                      for i, x in enumerate(labels))
    return f"{_label(state)}<select disabled>{options}</select>"


def _output_widget(state: dict) -> str:
    parts = []
    for out in state.get("outputs", []):
        data = out.get("data", {})
        if PLOTLY in data:
            parts.append(figure_html(data[PLOTLY]))
        elif "text/html" in data:
            parts.append("".join(data["text/html"]))
        elif "text/plain" in data or out.get("text"):
            parts.append(f"<pre>{html.escape(''.join(data.get('text/plain', out.get('text', ''))))}</pre>")
    return "".join(parts)


_LEAVES: dict[str, Callable[[dict], str]] = {
    "Slider": _slider,
    "Dropdown": _select, "RadioButtons": _select, "ToggleButtons": _select, "Select": _select,
    "Checkbox": lambda s: f'<input type="checkbox" disabled{" checked" if s.get("value") else ""}> {_label(s)}',
    "ToggleButton": lambda s: f'<button disabled{" aria-pressed=true" if s.get("value") else ""}>'
                              f'{html.escape(s.get("description", ""))}</button>',
    "Button": lambda s: f'<button disabled>{html.escape(s.get("description", ""))}</button>',
    "Progress": lambda s: f'{_label(s)}<progress value="{s.get("value", 0)}" max="{s.get("max", 1)}"></progress>',
    "HTMLMath": lambda s: f'{_label(s)}{s.get("value", "")}',
    "HTML": lambda s: f'{_label(s)}{s.get("value", "")}',
    "Label": lambda s: html.escape(str(s.get("value", ""))),
    "Text": lambda s: f'{_label(s)}<input type="text" disabled value="{html.escape(str(s.get("value", "")))}">',
    "Textarea": lambda s: f'{_label(s)}<textarea disabled>{html.escape(str(s.get("value", "")))}</textarea>',
    "Output": _output_widget,
}


def widget_html(model_id: str, states: dict, figures: dict) -> str:
    """Static HTML of widget ``model_id`` and its children, from the saved ``states``.

    ``figures`` maps a FigureWidget's model id to its final plotly figure. A widget type this
    function does not know is shown by its name, never dropped silently.
    """
    entry = states.get(model_id)
    if entry is None:
        return ""
    name, state = entry["model_name"].removesuffix("Model"), entry["state"]
    if model_id in figures:
        return figure_html(figures[model_id])
    if name.endswith("Box") or name in ("Accordion", "Tab", "Stack"):
        direction = "row" if name in ("HBox", "GridBox") else "column"
        inner = "".join(f"<div>{widget_html(c, states, figures)}</div>" for c in _children(state))
        return f'<div style="display:flex;flex-direction:{direction};gap:.5em;flex-wrap:wrap">{inner}</div>'
    for kind, draw in _LEAVES.items():
        if name.endswith(kind):
            return f"<div>{draw(state)}</div>"
    return f"<div><em>[{html.escape(name)} widget]</em></div>"


def captured_figures(nb: nbformat.NotebookNode) -> dict:
    """Pop the :data:`CAPTURE_FIGURES` cell (the last one) and return the figures it printed."""
    if not nb.cells or nb.cells[-1].source != CAPTURE_FIGURES:
        return {}
    cell = nb.cells.pop()
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    line = next((x for x in text.splitlines() if x.startswith(FIGURES_MARKER)), None)
    return json.loads(line.removeprefix(FIGURES_MARKER)) if line else {}


def make_static(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Rewrite ``nb``'s plotly and widget outputs as static HTML (in place) and return it."""
    figures = captured_figures(nb)
    states = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if PLOTLY in data:
                data["text/html"] = figure_html(data.pop(PLOTLY))
            if WIDGET_VIEW in data:
                model_id = data.pop(WIDGET_VIEW)["model_id"]
                inner = widget_html(model_id, states, figures)
                data["text/html"] = f'<div class="kit-static-widget" title="{NOTE}">{inner}</div>'
    return nb
