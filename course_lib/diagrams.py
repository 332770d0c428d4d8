"""Concept diagrams of the course, drawn as SVG by code (one source for notebooks, site and slides).

Three pictures carry ideas that prose carries badly:

- :func:`two_level_loop`: MAML's inner loop (θ → φᵢ on each learner's support answers) and outer
  loop (θ updated from the query losses). Derived in chapter 03, section 1.
- :func:`learner_split`: a learner is a task; K support answers, the other answers as query;
  meta-train and meta-test are split *by learner*. Chapter 01, section 2.
- :func:`federated_round`: one round of federated meta-learning; answers never leave a school,
  only parameters travel. Chapter 09.

Each function returns a :class:`Diagram`, which a notebook displays inline (it has ``_repr_svg_``)
and which :func:`write_all` saves under ``docs/diagrams/``: ``python -m course_lib.diagrams``
rewrites those files, and a test checks that the committed ones match this code.
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Colours: the course's plotly palette (blue = meta-train / θ, orange = meta-test / φ, green = loss).
BLUE, ORANGE, GREEN, GREY, INK = "#1f77b4", "#ff7f0e", "#2ca02c", "#9aa0a6", "#202124"
FONT = "font-family:'DejaVu Sans',Arial,Helvetica,sans-serif"


@dataclass
class Diagram:
    """An SVG drawing under construction: add shapes, then read ``svg`` or display it."""

    width: int
    height: int
    title: str
    parts: list[str] = field(default_factory=list)

    def box(self, x: float, y: float, w: float, h: float, label: str, colour: str = BLUE,
            fill_opacity: float = 0.12, size: int = 15) -> Diagram:
        """A rounded box at (x, y) of size w × h with a centred, possibly multi-line label."""
        self.parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{colour}" '
                          f'fill-opacity="{fill_opacity}" stroke="{colour}" stroke-width="2"/>')
        return self.text(x + w / 2, y + h / 2, label, size=size)

    def text(self, x: float, y: float, label: str, size: int = 14, anchor: str = "middle",
             colour: str = INK, weight: str = "normal") -> Diagram:
        """Text centred vertically on y; lines split at '\\n'; x_{i} and x^{q} become sub/superscripts."""
        lines = label.split("\n")
        top = y - (len(lines) - 1) * size * 0.6
        for n, line in enumerate(lines):
            self.parts.append(f'<text x="{x}" y="{top + n * size * 1.2:.1f}" font-size="{size}" '
                              f'text-anchor="{anchor}" dominant-baseline="middle" fill="{colour}" '
                              f'font-weight="{weight}">{_rich(line)}</text>')
        return self

    def arrow(self, points: list[tuple[float, float]], colour: str = INK, dashed: bool = False,
              width: float = 2.0) -> Diagram:
        """A polyline through ``points`` ending in an arrow head."""
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        self.parts.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}"{dash} '
                          f'marker-end="url(#head-{colour[1:]})"/>')
        return self

    def rect(self, x: float, y: float, w: float, h: float, colour: str, opacity: float = 1.0) -> Diagram:
        """A plain filled rectangle (a cell of a grid)."""
        self.parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{colour}" '
                          f'fill-opacity="{opacity}" stroke="white" stroke-width="1.5"/>')
        return self

    @property
    def svg(self) -> str:
        """The complete SVG document (UTF-8 text, fixed size, a <title> for screen readers)."""
        colours = sorted(set(re.findall(r"url\(#head-([0-9a-f]{6})\)", "".join(self.parts))))
        heads = "".join(
            f'<marker id="head-{c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#{c}"/></marker>'
            for c in colours)
        body = "\n  ".join(self.parts)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" style="{FONT}">\n'
                f'  <title>{html.escape(self.title)}</title>\n  <defs>{heads}</defs>\n'
                f'  <rect width="100%" height="100%" fill="white"/>\n  {body}\n</svg>\n')

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | Path) -> Path:
        """Write the SVG to ``path`` (folders created); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.svg, encoding="utf-8")
        return path


def _rich(line: str) -> str:
    """Escape ``line`` and turn x_{i} / x^{q} into SVG sub/superscript tspans."""
    out = html.escape(line, quote=False)
    out = re.sub(r"_\{([^}]*)\}", r'<tspan baseline-shift="sub" font-size="75%">\1</tspan>', out)
    return re.sub(r"\^\{([^}]*)\}", r'<tspan baseline-shift="super" font-size="75%">\1</tspan>', out)


def two_level_loop(n_learners: int = 3) -> Diagram:
    """MAML's two loops: θ adapts to φᵢ on each learner's support set; query losses update θ.

    Derived in chapter 03, section 1 (the bi-level objective ℒ(θ) = Σᵢ L(θ − α∇L(θ; 𝒟ᵢˢ); 𝒟ᵢ^q)).
    """
    if not 1 <= n_learners <= 5:
        raise ValueError(f"n_learners={n_learners}: draw between 1 and 5 learners")
    row, top = 86, 70
    height = top + n_learners * row + 80
    d = Diagram(760, height, "MAML's two-level loop: inner loop θ → φᵢ per learner, outer loop updates θ")
    d.text(380, 24, "Two levels: adapt per learner (inner), learn the starting point (outer)",
           size=17, weight="bold")
    mid = top + (n_learners * row - 20) / 2
    d.box(20, mid - 40, 150, 80, "θ\nshared initial\nparameters", BLUE, size=14)
    for i in range(n_learners):
        y = top + i * row
        name = f"{i + 1}" if i < n_learners - 1 or n_learners < 3 else "T"
        d.arrow([(170, mid), (250, y + 33)], BLUE)
        d.box(255, y, 190, 66, f"φ_{{{name}}} = θ − α∇L(θ; 𝒟_{{{name}}}^{{s}})\nK support answers", ORANGE, size=13)
        d.arrow([(445, y + 33), (505, y + 33)], ORANGE)
        d.box(510, y, 170, 66, f"L(φ_{{{name}}}; 𝒟_{{{name}}}^{{q}})\nquery answers", GREEN, size=13)
        if n_learners >= 3 and i == n_learners - 2:
            d.text(350, y + row - 6, "⋮", size=16, colour=GREY)
    bottom = top + n_learners * row
    d.arrow([(595, bottom - 20), (595, bottom + 30), (95, bottom + 30), (95, mid + 42)], GREY, dashed=True)
    d.text(345, bottom + 52, "outer loop (every meta-iteration):  θ ← θ − β ∇_{θ} Σ_{i} L(φ_{i}; 𝒟_{i}^{q})",
           size=14)
    d.text(350, top - 18, "inner loop (per learner, steps of size α)", size=13, colour=ORANGE)
    d.text(720, mid, "meta-\nloss", size=13, colour=GREEN)
    return d


def learner_split(n_train: int = 6, n_test: int = 3, n_answers: int = 12, k_shot: int = 4) -> Diagram:
    """A learner is a task: K support answers, the other answers as query; split by learner.

    Derived in chapter 01, section 2 (the learner-as-task split).
    """
    if n_train < 1 or n_test < 1 or not 1 <= k_shot < n_answers:
        raise ValueError(f"need n_train ≥ 1, n_test ≥ 1 and 1 ≤ k_shot < n_answers; got "
                         f"{n_train}, {n_test}, k_shot={k_shot}, n_answers={n_answers}")
    cell, left, top, gap = 30, 150, 78, 26
    width = left + n_answers * cell + 220
    height = top + (n_train + n_test) * cell + gap + 70
    d = Diagram(width, height, "Each learner is a task: support and query answers, meta-train and "
                               "meta-test split by learner")
    d.text(width / 2, 24, "Each learner is a task; the split is by learner, never by answer",
           size=17, weight="bold")
    d.text(left + k_shot * cell / 2, top - 18, f"support 𝒟_{{i}}^{{s}} (K = {k_shot})", size=13)
    d.text(left + (k_shot + n_answers) * cell / 2, top - 18, "query 𝒟_{i}^{q} (the other answers)", size=13)
    for r in range(n_train + n_test):
        test = r >= n_train
        y = top + r * cell + (gap if test else 0)
        colour = ORANGE if test else BLUE
        for c in range(n_answers):
            d.rect(left + c * cell, y, cell, cell, colour, 0.85 if c < k_shot else 0.3)
        d.text(left - 10, y + cell / 2, f"learner {r + 1}", size=12, anchor="end")
    x_line = left + k_shot * cell
    d.parts.append(f'<line x1="{x_line}" y1="{top - 6}" x2="{x_line}" '
                   f'y2="{top + (n_train + n_test) * cell + gap + 6}" stroke="{INK}" stroke-width="2.5"/>')
    right = left + n_answers * cell + 16
    d.text(right, top + n_train * cell / 2, "meta-train learners:\nθ is learned from\ntheir support → query",
           size=12, anchor="start", colour=BLUE)
    d.text(right, top + n_train * cell + gap + n_test * cell / 2,
           "meta-test learners:\nnew, unseen; adapt on\nsupport, score on query", size=12, anchor="start",
           colour=ORANGE)
    d.text(left + n_answers * cell / 2, height - 22, "one row per learner, one cell per answer: K of them "
           "to adapt on, the rest to predict", size=12)
    return d


def federated_round(n_schools: int = 3) -> Diagram:
    """One round of federated meta-learning: θ goes out, updates come back, answers stay put.

    Used in chapter 09 (federated meta-learning: Per-FedAvg, federated Reptile).
    """
    if not 2 <= n_schools <= 5:
        raise ValueError(f"n_schools={n_schools}: draw between 2 and 5 schools")
    width, col = 760, 760 / n_schools
    d = Diagram(width, 400, "One round of federated meta-learning: the server sends θ, each school "
                            "adapts on its own learners, only parameter updates return")
    d.text(width / 2, 24, "A federated round: parameters travel, learners' answers stay at school",
           size=17, weight="bold")
    d.box(width / 2 - 170, 46, 340, 66, "server: θ ← θ + β · mean_{j} Δ_{j}\n(never sees an answer)", BLUE)
    for j in range(n_schools):
        cx = col * (j + 0.5)
        out_x = width / 2 - 150 + 300 * j / (n_schools - 1)  # spread the arrows along the server box
        d.arrow([(out_x - 12, 112), (cx - 22, 218)], BLUE)
        d.arrow([(cx + 22, 218), (out_x + 12, 116)], ORANGE, dashed=True)
        d.box(cx - 105, 222, 210, 70, f"school {j + 1}: adapt θ on\nits learners → φ_{{{j + 1}}},\n"
                                      f"Δ_{{{j + 1}}} = φ_{{{j + 1}}} − θ", ORANGE, size=13)
        d.box(cx - 80, 318, 160, 48, "learners' answers\n(stay on site)", GREY, fill_opacity=0.15, size=12)
        d.parts.append(f'<line x1="{cx}" y1="292" x2="{cx}" y2="318" stroke="{GREY}" stroke-width="2"/>')
    d.text(60, 165, "1. send θ", size=13, colour=BLUE)
    d.text(width - 62, 165, "2. send Δ_{j}\nback", size=13, colour=ORANGE)
    d.text(width / 2, 388, "3. the server averages the updates; repeat for the next round", size=13)
    return d


DIAGRAMS = {"two_level_loop": two_level_loop, "learner_split": learner_split, "federated_round": federated_round}


def write_all(folder: str | Path = "docs/diagrams") -> list[Path]:
    """Write every diagram as ``folder/<name>.svg``; return the paths."""
    return [draw().save(Path(folder) / f"{name}.svg") for name, draw in DIAGRAMS.items()]


if __name__ == "__main__":
    for path in write_all(sys.argv[1] if len(sys.argv) > 1 else "docs/diagrams"):
        print(path)
