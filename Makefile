# The two commands: `make run` (the whole stack, locally) and `make test` (the whole suite).
# Everything else a newcomer might guess is here too; `make help` lists it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install only when a requirements file changes (or the venv is new).
STAMP := $(VENV)/.installed-requirements
ARGS ?=
# make test's pytest-xdist processes: two, as measured on 2 cores (docs/operations.md: four were
# no faster, the suite's CPU bounds it, and pushed the slowest tests past their timeout).
# Each uses its own Redis database (TEST_REDIS_URL's index + its number), PostgreSQL database,
# SQLite file, temp dir and ports. TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2

.PHONY: help .venv install test resilience lint format run bench load image clean

help: ## list the targets
	@grep -E '^[a-z.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "could not create $(VENV): install Python's venv module (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements-dev.txt
	@touch $@

.venv: $(STAMP) ## create .venv and install requirements-dev.txt (runtime + tools)

install: $(STAMP) ## same as .venv

test: $(STAMP) ## run the whole suite against real Redis and PostgreSQL (started if needed)
	bash scripts/ensure-services.sh
	bash scripts/ensure-ops-tools.sh || echo "make test: the alert-rule tests will say what is missing" >&2
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal tests/ --ignore=tests/resilience $(ARGS)
resilience: $(STAMP) ## kill, starve and fail real processes; one figure line per scenario (~11 min)
	bash scripts/ensure-services.sh
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/resilience $(ARGS)

lint: $(STAMP) ## ruff, the import contracts (no circles, the layers) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

format: $(STAMP) ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

run: $(STAMP) ## run the whole stack in the foreground (simulator when no Meta credentials)
	bash scripts/run-stack.sh

bench: $(STAMP) ## run the benchmarks (ARGS=… passed on)
	$(PY) bench/run.py $(ARGS)

load: $(STAMP) ## the seed's load test (Locust, 5 min) on a private stack of the Procfile's processes (ARGS=… passed on)
	bash bench/load.sh $(ARGS)

image: ## build the Dockerfile with podman or buildah (IMAGE=…, PYTHON_IMAGE=… passed on)
	bash scripts/build-image.sh

clean: ## remove the venv, var/ (local database, logs) and caches
	rm -rf $(VENV) var .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
