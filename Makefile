# The credits ledger. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install run demo test test-unit test-faults bench lint format lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/credits-ledger.pth"
	@touch $(STAMP)

install: $(STAMP) ## create .venv from requirements.lock (done by every target that needs it)

run: install ## start the service (embedded PostgreSQL and NATS under .data/ unless LEDGER_*_URL are set)
	$(PY) -m api serve

demo: install ## a scripted session against the ledger core, printed step by step
	$(PY) -m api demo

test: install ## run the whole suite (LEDGER_TEST_DATABASE_URL, else an embedded PostgreSQL)
	@if command -v chromium >/dev/null 2>&1; then echo "browser tests: Chromium at $$(command -v chromium)"; \
	else echo "browser tests: skipped, no Chromium found (apt-get install -y chromium)"; fi
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## run the unit tests only (no I/O, seconds)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-faults: install ## issue 18's fault suite: kill -9, restarts and outages on real processes (~8 min)
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

bench: install ## issue 6's benchmark: the service under wrk, vs ceilings (BENCH_ARGS="--runs 1")
	$(PY) tests/bench/run.py $(BENCH_ARGS)

lint: install ## ruff (lint + format check) and mypy strict (pyproject.toml: [tool.mypy] files)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock: ## re-resolve requirements.lock from pyproject.toml (needs network to PyPI)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 -o requirements.lock

clean: ## remove .venv and .data (embedded databases included)
	rm -rf $(VENV) .data .pytest_cache .ruff_cache .mypy_cache
