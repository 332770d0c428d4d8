"""reveal.js slides per chapter from the cells tagged ``slide`` (nbconvert), usable offline.

An instructor marks the cells worth projecting with the tag ``slide``; the deck holds the chapter's
title cell and those cells, one slide each, in notebook order (a cell may ask for a ``subslide`` or
``fragment`` instead through JupyterLab's slide-type field, which is kept). Built from the executed
runs (``build/executed/``), a deck shows the same figures as the book; from the plain notebooks it
shows the text, the math and the code. Every script the deck loads is a local copy
(:mod:`tools.kit.assets`), so ``build/slides/`` can be zipped and opened anywhere without a network.
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from tools.kit.assets import copy_assets, external_assets
from tools.kit.student import SOLUTION_TAG, has_tag

SLIDE_TAG = "slide"
HIDE_INPUT = "kit-hide-input"
TEMPLATES = Path(__file__).resolve().parent / "templates"
_KEPT_TYPES = {"slide", "subslide", "fragment"}


def slide_deck(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The chapter's title cell plus its ``slide`` cells (never a solution), each opening a slide.

    A code cell that has outputs shows only them (its input is tagged ``kit-hide-input``).

    Raises ValueError if no cell is tagged ``slide``.
    """
    picked = [c for c in nb.cells if has_tag(c, SLIDE_TAG) and not has_tag(c, SOLUTION_TAG)]
    if not picked:
        raise ValueError("no cell is tagged `slide`: tag the cells to project (cell metadata "
                         '"tags": ["slide"]) before building a deck')
    title = nb.cells[0] if nb.cells and nb.cells[0].cell_type == "markdown" else None
    deck = nbformat.from_dict(nb)
    deck.cells = []
    for cell in ([title] if title is not None and title not in picked else []) + picked:
        cell = nbformat.from_dict(cell)
        show = cell.metadata.setdefault("slideshow", {})
        if show.get("slide_type") not in _KEPT_TYPES:
            show["slide_type"] = "slide"
        if cell.cell_type == "code" and cell.get("outputs"):
            cell.metadata.setdefault("tags", []).append(HIDE_INPUT)
        deck.cells.append(cell)
    return deck


def exporter(assets: str, paths: dict[str, str]) -> tuple[SlidesExporter, dict]:
    """nbconvert's SlidesExporter on the course template, and the resources that point it at ``assets``.

    A code cell tagged ``kit-hide-input`` (set by :func:`slide_deck` on cells with outputs) shows
    only its output: the code stays in the notebook, the slide shows what it drew.
    """
    slides = SlidesExporter(template_name="course_reveal", extra_template_basedirs=[str(TEMPLATES)],
                            reveal_url_prefix=f"{assets}/{paths['reveal']}", reveal_scroll=True,
                            reveal_number="c/t", reveal_transition="none",
                            exclude_input_prompt=True, exclude_output_prompt=True)
    slides.register_preprocessor(TagRemovePreprocessor(remove_input_tags={HIDE_INPUT}), enabled=True)
    return slides, {"kit_assets": assets, "kit_paths": paths}


def build_slides(src: Path, out: Path) -> list[Path]:
    """Write ``out/<chapter>.slides.html`` for every notebook of ``src`` with ``slide`` cells, an index
    page, and the offline assets in ``out/_assets``; return the decks written.

    Raises FileNotFoundError if ``src`` has no notebook with a ``slide`` cell, RuntimeError if a
    deck would load a script or style sheet from the network.
    """
    paths = copy_assets(out / "_assets", reveal=True)
    slides, resources = exporter("_assets", paths)
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if not any(has_tag(c, SLIDE_TAG) for c in nb.cells):
            continue
        body, _ = slides.from_notebook_node(slide_deck(nb), resources={**resources, "metadata": {"name": path.stem}})
        target = out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    if not written:
        raise FileNotFoundError(f"no notebook in {src} has a cell tagged `slide`")
    remote = external_assets(out, "*.slides.html")
    if remote:
        raise RuntimeError("a deck would load from the network: " + "; ".join(remote[:5]))
    links = "\n".join(f'<li><a href="{p.name}">{html.escape(p.stem.removesuffix(".slides"))}</a></li>' for p in written)
    (out / "index.html").write_text(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                                    f"<title>Slides</title></head><body><h1>Meta-Learning for Personalized "
                                    f"Learning: slides</h1>\n<ul>\n{links}\n</ul></body></html>\n", encoding="utf-8")
    return written
