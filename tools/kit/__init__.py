"""The instructor kit: learner versions, slides and a static book, all built from notebooks/.

One source, several audiences (issue 14). Every product is derived from the chapter notebooks by
reading cell tags, so an instructor edits one file per chapter:

- ``solution``: a worked solution. Removed from the learner versions (:mod:`tools.kit.student`).
- ``slide``: shown in the chapter's reveal.js deck (:mod:`tools.kit.slides`).

:mod:`tools.kit.execute` runs each notebook once into ``build/executed/`` (outputs, widget state
turned into static HTML); the slides and the Sphinx site (``tools/kit/site``) are built from those
runs. Every asset a page needs (reveal.js, MathJax, plotly.js) is copied from an installed Python
package (:mod:`tools.kit.assets`), so the outputs work offline: no CDN at view time.

Command line: ``python -m tools.kit {student,execute,slides,site} ...`` (the Makefile's ``make
student``, ``make slides`` and ``make site`` call it).
"""
