"""Sphinx configuration of the course book (copied to build/site-src/conf.py by tools/kit/site.py).

myst-nb renders the notebooks executed once by tools/kit/execute.py (nothing is executed here);
every script is local: plotly.js and MathJax 2 are in _static/ (tools/kit/assets.py), and the
ipywidgets manager, which myst-nb would load from a CDN, is switched off because widgets are
static HTML by then (tools/kit/static.py).
"""

project = "Meta-Learning for Personalized Learning"
author = "Meta-Learning for Personalized Learning contributors"
copyright = "the course's contributors, MIT licence"

extensions = ["myst_nb"]
nb_execution_mode = "off"          # tools/kit/execute.py ran each notebook once
nb_ipywidgets_js = {}              # no widget manager from a CDN: widgets are static HTML
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "html_image"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_static"]
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_js_files = ["plotly.min.js"]  # before the body: the figures' scripts call Plotly.newPlot
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "home_page_in_toc": True}

# MathJax 2 from jupyter-server-mathjax, relative to _static/ (Sphinx's default would be a CDN).
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                               "processEscapes": True, "processClass": "math|output_area",
                               "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
                   # jupyter-server-mathjax ships the STIX-Web fonts only (not MathJax's TeX fonts)
                   "HTML-CSS": {"linebreaks": {"automatic": True}, "webFont": "STIX-Web",
                                "availableFonts": [], "preferredFont": None, "imageFont": None}}
