"""Every notebook, run top to bottom in JupyterLab in a real browser: what a learner sees.

nbval proves that the cells run; it does not prove that anything is drawn. For each notebook in
notebooks/ (found by glob, so a new chapter is covered without editing this file) this test opens it
in JupyterLab, runs "Run All Cells", waits until the kernel is idle, and asserts:

* no cell has an error output, and every non-empty code cell ran;
* every ipywidget output is a rendered widget view, not its text repr (``VBox(children=...)``) or
  "Error displaying widget";
* every plotly figure has a non-empty SVG with data drawn in it (lines, markers, bars or a heatmap);
* in one interactive cell (controls and a figure), moving a slider (or choosing a menu entry, or
  pressing a button) changes the figure.

A screenshot of each notebook's interactive cell (or of the page) goes to build/browser/NN_name.png.
Run with `make test-browser` (needs /usr/bin/chromium; see tests/browser/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "browser"

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUN_TIMEOUT_S = float(os.environ.get("BROWSER_NOTEBOOK_TIMEOUT", "1200"))
# What a plotly SVG holds once data is drawn: lines, markers, fills, bars, boxes, heatmap images, text marks.
DATA_MARKS = (".scatterlayer path.js-line, .scatterlayer path.point, .scatterlayer path.js-fill, "
              ".scatterlayer text, .barlayer path, .boxlayer path, .heatmaplayer image, .imagelayer image, "
              ".contourlayer path, .pielayer path.surface")
# A widget that did not render: its text repr, or ipywidgets' error message.
WIDGET_AS_TEXT = re.compile(r"^\s*(\w+)\((children|value|description|layout|options|index)=|^\s*FigureWidget\(|"
                            r"Error displaying widget|Failed to load model class|Error rendering", re.M)
CONTROLS = ".widget-slider, .widget-hslider, .widget-dropdown, .widget-toggle-button, .widget-checkbox, .widget-button"


def kernels(server: dict) -> list[dict]:
    with urllib.request.urlopen(f"{server['url']}/api/kernels?token={server['token']}", timeout=10) as r:
        return json.load(r)


def shutdown_kernels(server: dict) -> None:
    for k in kernels(server):
        req = urllib.request.Request(f"{server['url']}/api/kernels/{k['id']}?token={server['token']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt",
                                     "els => els.map(e => e.textContent.trim())")


def wait_until_done(page, server: dict, timeout_s: float) -> None:
    """Wait until no cell is queued or running and the kernel is idle (three polls in a row)."""
    deadline, quiet = time.monotonic() + timeout_s, 0
    while quiet < 3:
        if time.monotonic() > deadline:
            running = [p for p in prompts(page) if "*" in p]
            pytest.fail(f"the notebook did not finish within {timeout_s:.0f} s ({len(running)} cells still queued); "
                        "raise BROWSER_NOTEBOOK_TIMEOUT if the machine is slow")
        busy = any("*" in p for p in prompts(page)) or any(k["execution_state"] != "idle" for k in kernels(server))
        quiet = 0 if busy else quiet + 1
        page.wait_for_timeout(1000)


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')]"
                           ".some(e => e.textContent.includes('*') || /\\d/.test(e.textContent))", timeout=60_000)


def open_notebook(page, server: dict, name: str) -> None:
    page.goto(f"{server['url']}/lab/tree/notebooks/{name}?token={server['token']}&reset")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
    deadline = time.monotonic() + 120
    while not kernels(server) or any(k["execution_state"] not in ("idle",) for k in kernels(server)):
        if time.monotonic() > deadline:
            pytest.fail(f"the kernel of {name} did not start within 120 s; see {BUILD / 'jupyter-lab.log'}")
        page.wait_for_timeout(500)


def figure_state(page) -> list[dict]:
    """Per plotly figure on the page: its size and how many data marks its SVG holds."""
    return page.eval_on_selector_all(".jp-Notebook .js-plotly-plot", f"""els => els.map(e => {{
        const r = e.getBoundingClientRect();
        return {{w: r.width, h: r.height, svg: e.querySelectorAll('svg.main-svg').length,
                 marks: e.querySelectorAll({json.dumps(DATA_MARKS)}).length,
                 cell: [...document.querySelectorAll('.jp-Notebook .jp-Cell')].indexOf(e.closest('.jp-Cell'))}};
    }})""")


def check_outputs(page, name: str) -> None:
    errors = page.eval_on_selector_all('.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]',
                                       "els => els.map(e => e.textContent.slice(0, 800))")
    assert not errors, f"{name}: {len(errors)} cell(s) raised in the browser:\n" + "\n---\n".join(errors)
    # Cells whose input is collapsed (the hidden solution cells) show a placeholder without a prompt; their
    # outputs and errors are still checked above and below.
    not_run = page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')]
        .map((c, i) => [i, c.querySelector('.jp-InputArea-prompt'), c.querySelector('.jp-InputArea-editor')])
        .filter(([i, p, e]) => p && e)
        .map(([i, p, e]) => [i, p.textContent.trim(), e.textContent.trim()])
        .filter(([i, p, src]) => src && !/\\[\\d+\\]/.test(p)).map(([i, p]) => `code cell ${i}: ${p}`)""")
    assert not not_run, f"{name}: cells that did not run: {not_run}"
    as_text = [t for t in page.eval_on_selector_all('.jp-Notebook .jp-OutputArea-output[data-mime-type="text/plain"]',
                                                    "els => els.map(e => e.textContent.slice(0, 300))")
               if WIDGET_AS_TEXT.search(t)]
    assert not as_text, f"{name}: widgets shown as text instead of a widget view: {as_text}"
    views = page.eval_on_selector_all(
        '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]',
        "els => els.map(e => ({widget: !!e.querySelector('.jupyter-widgets, .lm-Widget'), text: e.textContent.slice(0, 200)}))")
    broken = [v["text"] for v in views if not v["widget"] or WIDGET_AS_TEXT.search(v["text"])]
    assert not broken, f"{name}: widget outputs without a rendered view: {broken}"
    figures = figure_state(page)
    blank = [f for f in figures if not (f["svg"] and f["marks"] and f["w"] > 50 and f["h"] > 50)]
    assert not blank, f"{name}: plotly figures drawn blank (size, SVG layers, data marks): {blank}"


def fingerprint(cell) -> str:
    """What the figures of a cell draw (their SVG data layers and titles), to tell a change."""
    return cell.evaluate("""c => [...c.querySelectorAll('.js-plotly-plot')].map(p =>
        [...p.querySelectorAll('.cartesianlayer, .heatmaplayer, .g-gtitle, .infolayer .gtitle, .pielayer')]
          .map(e => e.innerHTML).join('')).join('|')""")


def interact(page, name: str) -> Path:
    """Move the first slider (or menu, or button) of the first cell that has controls and a figure;
    assert that the figure changes. Returns the screenshot path."""
    cells = page.locator(".jp-Notebook .jp-CodeCell").filter(has=page.locator(".js-plotly-plot")).filter(
        has=page.locator(CONTROLS))
    shot = BUILD / f"{Path(name).stem}.png"
    if cells.count() == 0:
        page.screenshot(path=str(shot))
        pytest.fail(f"{name}: no cell has both ipywidgets controls and a plotly figure (every chapter has one)")
    cell = cells.first
    cell.scroll_into_view_if_needed()
    before = fingerprint(cell)
    action = operate(cell)
    try:
        page.wait_for_function("([c, before]) => [...c.querySelectorAll('.js-plotly-plot')].map(p => "
                               "[...p.querySelectorAll('.cartesianlayer, .heatmaplayer, .g-gtitle, .infolayer .gtitle, "
                               ".pielayer')].map(e => e.innerHTML).join('')).join('|') !== before",
                               arg=[cell.element_handle(), before], timeout=120_000)
    except Exception:
        cell.screenshot(path=str(shot))
        pytest.fail(f"{name}: {action} did not change the figure within 120 s (screenshot {shot})")
    page.wait_for_timeout(500)
    outputs = cell.locator(".jp-Cell-outputWrapper")  # the controls and the figure, not the (long) code
    (outputs if outputs.count() else cell).screenshot(path=str(shot))
    return shot


def operate(cell) -> str:
    """Act on the cell's first control the way a learner would; say what was done."""
    slider = cell.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle")
    if slider.count():
        handle = slider.first
        at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        key, way = ("ArrowLeft", "left") if at_max else ("ArrowRight", "right")  # a slider at its end cannot move on
        handle.focus()
        handle.press(key)
        return f"moving a slider one step {way}"
    dropdown = cell.locator(".widget-dropdown select")
    if dropdown.count():
        options = dropdown.first.evaluate("s => [...s.options].map(o => o.value)")
        current = dropdown.first.input_value()
        dropdown.first.select_option(next(o for o in options if o != current))
        return "choosing another menu entry"
    button = cell.locator(".widget-button, .widget-toggle-button").first
    button.click()
    return f"pressing the button {button.text_content().strip()!r}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_draws_in_jupyterlab(page, lab_server, name):
    page.set_default_timeout(60_000)
    try:
        open_notebook(page, lab_server, name)
        run_all_cells(page)
        wait_until_done(page, lab_server, RUN_TIMEOUT_S)
        check_outputs(page, name)
        interact(page, name)
    finally:
        page.screenshot(path=str(BUILD / f"{Path(name).stem}-page.png"))
        shutdown_kernels(lab_server)
