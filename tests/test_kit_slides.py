"""make slides: reveal.js decks from the `slide` cells, with no script or style sheet from the network."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from tools.kit import slides
from tools.kit.assets import external_assets
from tools.kit.student import has_tag

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KIT = importlib.util.find_spec("sphinx_revealjs") and importlib.util.find_spec("jupyter_server_mathjax")
needs_kit = pytest.mark.skipif(not KIT, reason="the `kit` extra is not installed (make kit)")


def _notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = list(cells)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_a_handful_of_slides(path: Path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if has_tag(c, slides.SLIDE_TAG)]
    assert 3 <= len(tagged) <= 12, f"{path.name}: {len(tagged)} cells tagged `slide`; tag 3-12 key cells"
    assert not [c for c in tagged if has_tag(c, "solution")], "a solution cell must not be a slide"


def test_deck_keeps_title_and_slide_cells_in_order_and_hides_code_with_output():
    title = nbformat.v4.new_markdown_cell("# Chapter\nmotivation")
    idea = nbformat.v4.new_markdown_cell("## 1 · Idea", metadata={"tags": ["slide"]})
    skipped = nbformat.v4.new_markdown_cell("not projected")
    plot = nbformat.v4.new_code_cell("draw()", metadata={"tags": ["slide"]})
    plot.outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<b>figure</b>"})]
    bare = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["slide"]})
    fragment = nbformat.v4.new_markdown_cell("then", metadata={"tags": ["slide"], "slideshow": {"slide_type": "fragment"}})
    secret = nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["slide", "solution"]})
    nb = _notebook(title, idea, skipped, plot, bare, fragment, secret)
    deck = slides.slide_deck(nb)
    assert [c.source for c in deck.cells] == ["# Chapter\nmotivation", "## 1 · Idea", "draw()", "x = 1", "then"]
    assert [c.metadata["slideshow"]["slide_type"] for c in deck.cells] == ["slide"] * 4 + ["fragment"]
    assert slides.HIDE_INPUT in deck.cells[2].metadata["tags"] and slides.HIDE_INPUT not in deck.cells[3].metadata["tags"]
    assert "slideshow" not in nb.cells[1].metadata, "the source notebook must not be modified"

    exporter, resources = slides.exporter("_assets", {"plotly": "plotly.min.js", "mathjax": "mathjax/MathJax.js",
                                                      "reveal": "reveal.js"})
    page, _ = exporter.from_notebook_node(deck, resources={**resources, "metadata": {"name": "t"}})
    assert page.count("<section") >= 5 and "<b>figure</b>" in page
    assert "draw" not in page and '<span class="n">x</span>' in page, "input of a code cell with output is hidden"
    assert "In [" not in page, "no prompts on slides"
    assert "not projected" not in page and "answer = 42" not in page
    for local in ("_assets/reveal.js/dist/reveal.js", "_assets/reveal.js/dist/reveal.css",
                  "_assets/mathjax/MathJax.js", "_assets/plotly.min.js"):
        assert local in page
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page), "the deck loads something from the network"


def test_a_notebook_without_slide_cells_is_refused_with_a_message():
    with pytest.raises(ValueError, match="tagged `slide`"):
        slides.slide_deck(_notebook(nbformat.v4.new_markdown_cell("# T")))


@needs_kit
def test_build_slides_of_the_chapters_works_offline(tmp_path: Path):
    decks = slides.build_slides(ROOT / "notebooks", tmp_path)
    assert [p.name for p in decks] == [f"{p.stem}.slides.html" for p in NOTEBOOKS]
    assert external_assets(tmp_path) == []
    for needed in ("reveal.js/dist/reveal.js", "reveal.js/dist/theme/simple.css", "reveal.js/plugin/notes/notes.js",
                   "mathjax/MathJax.js", "mathjax/config/TeX-AMS-MML_HTMLorMML-full.js", "plotly.min.js"):
        assert (tmp_path / "_assets" / needed).is_file(), f"offline asset missing: {needed}"
    loop = (tmp_path / "03_maml_from_first_principles.slides.html").read_text(encoding="utf-8")
    assert "two_level_loop" in loop, "chapter 03's deck shows the two-level-loop diagram cell"
    assert 'href="03_maml_from_first_principles.slides.html"' in (tmp_path / "index.html").read_text()


def test_external_assets_finds_remote_scripts_styles_and_css_urls(tmp_path: Path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.example/x.js"></script>'
                                     '<link rel="stylesheet" href="//cdn.example/y.css">'
                                     '<style>@font-face{src:url("https://fonts.example/z.woff")}</style>'
                                     '<a href="https://arxiv.org/abs/1703.03400">a paper link is fine</a>'
                                     '<script src="_assets/local.js"></script>')
    found = external_assets(tmp_path)
    assert [f.split(": ")[1] for f in found] == ["https://cdn.example/x.js", "//cdn.example/y.css",
                                                 "https://fonts.example/z.woff"]
