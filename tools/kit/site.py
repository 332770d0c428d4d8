"""A static HTML book of all chapters with their executed outputs (Sphinx + myst-nb + sphinx-book-theme).

``build_site`` stages the executed notebooks (``build/executed/``, see :mod:`tools.kit.execute`)
with a generated front page, the Sphinx configuration (``tools/kit/sphinx_conf.py``) and the
offline assets, then runs Sphinx once. Nothing is executed here, and :func:`external_assets`
checks that no page loads a script, style sheet or font from the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tools.kit.assets import copy_assets, external_assets

HERE = Path(__file__).resolve().parent
def front_page(chapters: list[Path]) -> str:
    """index.md: what the book is, and the table of contents (chapters in file-name order)."""
    entries = "\n".join(f"notebooks/{p.stem}" for p in chapters)
    return f"""# Meta-Learning for Personalized Learning

The course's chapters as a book: every notebook with the outputs of one run, top to bottom, on the
machine that built this site. Figures are interactive (zoom, hover); widgets are shown as they were
at the end of the run; to move a slider, open the notebook in JupyterLab (`make lab`).

```{{toctree}}
:maxdepth: 1
:caption: Chapters

{entries}
```
"""


def build_site(src: Path, out: Path) -> Path:
    """Build the book from the executed notebooks in ``src`` into ``out``; return its index.html.

    Raises FileNotFoundError if ``src`` has no notebook (run ``python -m tools.kit execute`` first)
    and RuntimeError if Sphinx fails or a page would load something from the network.
    """
    from sphinx.cmd.build import build_main

    chapters = sorted(src.glob("*.ipynb"))
    if not chapters:
        raise FileNotFoundError(f"no executed notebook in {src}: run `python -m tools.kit execute` "
                                "(or `make site`, which does) first")
    stage = out.parent / f"{out.name}-src"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "notebooks").mkdir(parents=True)
    for path in chapters:
        shutil.copy2(path, stage / "notebooks" / path.name)
    shutil.copy2(HERE / "sphinx_conf.py", stage / "conf.py")
    copy_assets(stage / "_static", reveal=False)
    (stage / "index.md").write_text(front_page(chapters), encoding="utf-8")
    if build_main(["-b", "html", "-q", "-j", "1", str(stage), str(out)]) != 0:
        raise RuntimeError(f"Sphinx failed on {stage} (messages above)")
    remote = external_assets(out)
    if remote:
        raise RuntimeError("the book would load from the network: " + "; ".join(remote[:5]))
    return out / "index.html"
