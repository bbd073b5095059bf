# modelobs: every target works on a fresh machine with Python 3.11+ and Go 1.26+.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
UV := $(shell command -v uv 2>/dev/null)

.PHONY: help venv binaries up down status test test-fast e2e lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@if [ -z "$(UV)" ]; then $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"; fi
	uv sync --frozen --extra dev
	@touch $@

venv: $(VENV)/.synced  ## install the Python project and its pinned dependencies

binaries:  ## build the collector, Jaeger, Prometheus, promtool, Alertmanager, VictoriaLogs, helm, k8scheck, telemetrygen (cached)
	deploy/build-all.sh

up: venv binaries  ## start the whole native stack with a steady load (REPLICAS=2: PostgreSQL, 2 model services, 1 monitor)
	$(if $(REPLICAS),MODELOBS_REPLICAS=$(REPLICAS) )$(VENV)/bin/python -m deploy.native up

down:  ## stop everything `make up` started
	$(VENV)/bin/python -m deploy.native down

status:  ## show what runs and where
	$(VENV)/bin/python -m deploy.native status

test: venv binaries  ## every test: unit, integration and end-to-end against the real components
	$(VENV)/bin/pytest

test-fast: venv  ## tests that need no Go binaries
	$(VENV)/bin/pytest -m "not e2e"

e2e: venv binaries  ## only the end-to-end tests
	$(VENV)/bin/pytest -m e2e

lint: venv  ## ruff
	$(VENV)/bin/ruff check service tests bench deploy
	$(VENV)/bin/ruff format --check service tests bench deploy

bench: venv  ## benchmarks (not tests): figures go to bench/results/
	$(VENV)/bin/python bench/drift.py
	$(VENV)/bin/python bench/store.py
