"""course_lib.diagrams: the committed SVGs are the ones the code draws, and they are valid SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from course_lib import diagrams

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_committed_svg_matches_the_code(name: str):
    committed = (ROOT / "docs" / "diagrams" / f"{name}.svg").read_text(encoding="utf-8")
    assert committed == diagrams.DIAGRAMS[name]().svg, (
        f"docs/diagrams/{name}.svg is stale: run `python -m course_lib.diagrams docs/diagrams`")


@pytest.mark.parametrize("name", sorted(diagrams.DIAGRAMS))
def test_svg_is_well_formed_and_titled(name: str):
    drawing = diagrams.DIAGRAMS[name]()
    root = ET.fromstring(drawing.svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert root.find(f"{ns}title").text, "every diagram needs a <title> for screen readers"
    # every arrow head referenced is defined
    ids = {m.get("id") for m in root.iter(f"{ns}marker")}
    used = {p.get("marker-end")[5:-1] for p in root.iter(f"{ns}path") if p.get("marker-end")}
    assert used <= ids
    assert drawing._repr_svg_() == drawing.svg


def test_labels_use_the_course_symbols():
    loop = diagrams.two_level_loop().svg
    for symbol in ("θ", "φ", "α", "β", "𝒟"):
        assert symbol in loop
    split = diagrams.learner_split(k_shot=3).svg
    assert "K = 3" in split and "meta-test" in split


def test_sub_and_superscripts_become_tspans():
    assert diagrams._rich("φ_{i} 𝒟^{q} <x>") == (
        'φ<tspan baseline-shift="sub" font-size="75%">i</tspan> '
        '𝒟<tspan baseline-shift="super" font-size="75%">q</tspan> &lt;x&gt;')


@pytest.mark.parametrize("call", [lambda: diagrams.two_level_loop(0), lambda: diagrams.learner_split(k_shot=12),
                                  lambda: diagrams.federated_round(1)])
def test_bad_sizes_are_rejected_with_a_message(call):
    with pytest.raises(ValueError, match="between|need"):
        call()


def test_write_all(tmp_path: Path):
    paths = diagrams.write_all(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{n}.svg" for n in diagrams.DIAGRAMS)
