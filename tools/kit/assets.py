"""Offline assets for the slides and the site, copied from installed Python packages.

A page built by the kit must work with the network unplugged (a workshop room, a train), so nothing
is loaded from a CDN at view time. Each JavaScript library comes from a package the ``kit`` extra
installs from PyPI (``make kit``); none is downloaded by the build itself:

========== ================================ ===============================================
library    package that ships it            files used
========== ================================ ===============================================
reveal.js  sphinx-revealjs                  ``_static/revealjs/{dist,plugin}``
MathJax 2  jupyter-server-mathjax           ``static/`` (MathJax.js, TeX input, HTML-CSS output)
plotly.js  plotly (a course dependency)     ``package_data/plotly.min.js``
========== ================================ ===============================================
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

# MathJax 2's combined configuration shipped by jupyter-server-mathjax (TeX in, HTML-CSS out) + Safe mode.
MATHJAX_QUERY = "?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def package_dir(name: str, hint: str) -> Path:
    """Folder of the installed package ``name``; a clear error saying how to install it otherwise."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the instructor kit needs the package `{name}` ({hint}); run `make kit` "
                                  "(installs the `kit` extra: pip install -e '.[kit]')")
    return Path(next(iter(spec.submodule_search_locations)))


def reveal_dir() -> Path:
    """reveal.js (dist/ and plugin/) as shipped by sphinx-revealjs."""
    return package_dir("sphinx_revealjs", "it ships reveal.js") / "_static" / "revealjs"


def mathjax_dir() -> Path:
    """MathJax 2 as shipped by jupyter-server-mathjax."""
    return package_dir("jupyter_server_mathjax", "it ships MathJax 2") / "static"


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly (the same version that made the figures)."""
    return package_dir("plotly", "a course dependency") / "package_data" / "plotly.min.js"


def copy_assets(out: Path, reveal: bool = True) -> dict[str, str]:
    """Copy plotly.js, MathJax and (if ``reveal``) reveal.js into ``out``; return their paths relative to it.

    Keys: ``plotly`` (a .js file), ``mathjax`` (MathJax.js with its configuration query) and
    ``reveal`` (the folder holding dist/ and plugin/). Existing copies are refreshed in place.
    """
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plotly_js(), out / "plotly.min.js")
    shutil.copytree(mathjax_dir(), out / "mathjax", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    paths = {"plotly": "plotly.min.js", "mathjax": "mathjax/MathJax.js" + MATHJAX_QUERY}
    if reveal:
        source = reveal_dir()
        for part in ("dist", "plugin"):
            shutil.copytree(source / part, out / "reveal.js" / part, dirs_exist_ok=True)
        paths["reveal"] = "reveal.js"
    return paths


# A <script src=...>, <link href=...> or CSS url(...) that leaves the page's own folder.
_REMOTE = re.compile(r"""(?:<script[^>]*\bsrc|<link[^>]*\bhref|<img[^>]*\bsrc)\s*=\s*["']((?:https?:)?//[^"']+)"""
                     r"""|url\(\s*["']?((?:https?:)?//[^)"']+)""", re.IGNORECASE)


def external_assets(folder: Path, pattern: str = "*.html") -> list[str]:
    """Every remote script, style sheet, image or CSS url() referenced by the pages under ``folder``."""
    found = []
    for page in sorted(folder.rglob(pattern)):
        text = page.read_text(encoding="utf-8", errors="replace")
        found += [f"{page.relative_to(folder)}: {a or b}" for a, b in _REMOTE.findall(text)]
    return found
