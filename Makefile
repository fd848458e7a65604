# Every target sets itself up: the first run creates .venv with the pinned dev dependencies.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAM_VENV := .venv-sam
SAM_VERSION := 1.170.0
SAM := $(if $(shell command -v sam 2>/dev/null),sam,$(SAM_VENV)/bin/sam)
# checkov pins its own boto3 (and more), so it lives in its own environment, pinned in requirements-checkov.txt.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# Offline: no update check, no Prisma Cloud downloads (tests/infra/test_template.py runs it the same way).
CHECKOV := env -u PYTHONPATH CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE \
	$(CHECKOV_VENV)/bin/checkov --skip-download --framework cloudformation --quiet --compact
# `make bench` runs on Lambda's Python (3.12) when it is installed (pyenv), in its own environment
# with the same pinned dev dependencies; BENCH_PYTHON=python3 measures on the default Python instead.
BENCH_PYTHON ?= $(or $(shell pyenv which python3.12 2>/dev/null),$(lastword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python)),$(shell command -v python3.12 2>/dev/null),$(PYTHON))
BENCH_VENV := $(if $(filter 3.12%,$(shell $(BENCH_PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null)),.venv-312,$(VENV))
# The shared layer's package is importable as Lambda finds it on /opt/python.
export PYTHONPATH := $(CURDIR)/layers/shared:$(CURDIR)
# make soak: full = 100,000 objects (the figures in docs/performance.md), small = the CI run (10,000).
SCALE ?= full

.DEFAULT_GOAL := help
.PHONY: help setup test lint format bench soak run openapi models build validate deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-9s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv with the pinned dev dependencies

# Then the braze-forwarder command (cli/, pyproject.toml), editable: it runs this working tree's code.
$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The tests marked `clock` read the time or compare dates: they run with the clock moved to a second
# before a month ends, a month further each test (tests/clock.py), so none depends on the day it runs.
test: $(STAMP) $(CHECKOV_STAMP) ## run every test, offline
	$(PY) -m pytest -m "not clock"
	$(PY) -m pytest -m clock --clock=month-ends

lint: $(STAMP) $(CHECKOV_STAMP) ## ruff, mypy, cfn-lint (informational checks too) and checkov
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --cache-dir $(VENV)/.mypy_cache
	$(VENV)/bin/cfn-lint --include-checks I -- template.yaml
	$(CHECKOV) --file template.yaml

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

format: $(STAMP) ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# make bench IMPORT_ROWS=1000000: the import through the local stack at issue #20's million rows
# (about 8 minutes a run, two runs; the default is 50,000).
IMPORT_ROWS ?=

bench: $(BENCH_VENV)/.installed ## print the performance figures (on Python 3.12 when installed); IMPORT_ROWS=N
	IMPORT_ROWS=$(IMPORT_ROWS) $(BENCH_VENV)/bin/python -m bench

.venv-312/.installed: requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	$(BENCH_PYTHON) -m venv .venv-312
	.venv-312/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	.venv-312/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

soak: $(STAMP) ## Braze faults + sender kills, then lost/duplicates; SCALE=small for CI
	$(PY) -m soak --scale $(SCALE) $(ARGS)

run: $(STAMP) ## run the whole pipeline locally (moto + Braze sandbox); ARGS="--help" for options
	$(PY) -m local $(ARGS)

openapi: $(STAMP) ## write openapi.json from the code (make test fails while it differs)
	$(PY) -m apidoc

$(SAM_VENV)/bin/sam:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION)

models: $(STAMP) ## cut botocore's DynamoDB model to the operations the package calls (after adding one)
	$(VENV)/bin/python layers/shared/trim_botocore_models.py

build: $(if $(filter sam,$(SAM)),,$(SAM_VENV)/bin/sam) ## sam build (needs python3.12 on PATH, as SAM does)
	$(SAM) build

validate: $(if $(filter sam,$(SAM)),,$(SAM_VENV)/bin/sam) ## sam validate --lint
	$(SAM) validate --lint

deploy: build ## sam deploy (first time: make deploy ARGS=--guided)
	$(SAM) deploy $(ARGS)

clean: ## remove the environments and build output
	rm -rf $(VENV) .venv-312 $(SAM_VENV) $(CHECKOV_VENV) .aws-sam
