# Meta-Learning for Personalized Learning: set-up, lab and tests.
#   make lab    create .venv if missing, install everything, launch JupyterLab on notebooks/
#   make test   same set-up, then unit tests + every notebook under nbval
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.course-installed
CELL_TIMEOUT ?= 600
PYTEST_ARGS ?=

.PHONY: setup lab test unit notebooks strip bench clean-venv

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

lab: setup
	@echo "Starting JupyterLab on localhost: open the http://127.0.0.1:PORT/lab?token=... URL printed below"
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --no-browser \
		$(if $(filter 0,$(shell id -u)),--allow-root)

test: setup
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) --durations=12 $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

notebooks: setup
	$(BIN)/python -m pytest notebooks --nbval-lax --nbval-cell-timeout=$(CELL_TIMEOUT) --durations=0 $(PYTEST_ARGS)

strip: setup
	$(BIN)/python tools/strip_notebooks.py notebooks

bench: setup
	$(BIN)/python -m course_lib.bench

clean-venv:
	rm -rf $(VENV)
