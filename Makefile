# Meta-Learning for Personalized Learning: set-up, lab and tests.
#   make lab    create .venv if missing, install everything, launch JupyterLab on notebooks/
#   make test   same set-up, then unit tests + every notebook under nbval
#   make serve  chapter 10's personalisation service on http://127.0.0.1:$(PORT) (PORT=8000 by default)
#   make student / slides / site   the instructor kit (build/student, build/slides, build/site)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.course-installed
KIT_STAMP := $(VENV)/.kit-installed
CELL_TIMEOUT ?= 600
PYTEST_ARGS ?=
# make serve: port, model file (built by the chapter 10 study if missing) and SQLite learner state
PORT ?= 8000
MODEL ?= results/distilled_swesat.pt
DB ?= runs/learners.sqlite3

.PHONY: setup kit lab test unit notebooks strip bench serve student executed slides site clean-venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; set PYTHON=/path/to/python3.11 (e.g. make lab PYTHON=python3.12)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled only when the declared dependencies change.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

setup: $(STAMP)
	@$(BIN)/python tools/install_learn2learn.py || echo "(continuing without learn2learn: see the message above)"

# The instructor kit's extra packages (Sphinx, myst-nb, the book theme; reveal.js and MathJax ship inside
# sphinx-revealjs and jupyter-server-mathjax), reinstalled only when pyproject.toml changes.
$(KIT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[kit]'
	@touch $(KIT_STAMP)

kit: setup $(KIT_STAMP)

lab: setup
	@echo "Starting JupyterLab on localhost: open the http://127.0.0.1:PORT/lab?token=... URL printed below"
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --no-browser \
		$(if $(filter 0,$(shell id -u)),--allow-root)

test: setup kit
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) --durations=12 $(PYTEST_ARGS)

unit: setup kit
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: setup
	$(BIN)/python -m pytest notebooks --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) --durations=0 $(PYTEST_ARGS)

strip: setup
	$(BIN)/python tools/strip_notebooks.py notebooks

bench: setup
	$(BIN)/python -m course_lib.bench

serve: setup $(MODEL)
	$(BIN)/python -m course_lib.serving --host 127.0.0.1 --port $(PORT) --model $(MODEL) --db $(DB)

# The served model (teacher + distilled student); committed, so this runs only if it was deleted (~10 min on 2 cores).
$(MODEL):
	$(BIN)/python -m course_lib.experiments.distillation --no-progress --json results/distillation.json --set save_model=$(MODEL)

# The instructor kit (tools/kit): learner versions without `solution` cells, one execution per notebook
# (build/executed, redone only for notebooks changed since), reveal.js decks of the `slide` cells, the book.
student: setup
	$(BIN)/python -m tools.kit student

executed: kit
	$(BIN)/python -m tools.kit execute --timeout $(CELL_TIMEOUT)

slides: executed
	$(BIN)/python -m tools.kit slides

site: executed
	$(BIN)/python -m tools.kit site

clean-venv:
	rm -rf $(VENV)
