# One way to do each thing, used by people and CI alike. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null || echo /opt/rejuve/tools/bin/uv)
REJUVE := .venv/bin/rejuve
# Never let uv fetch a Python of its own (no such download on these machines).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system

.PHONY: help setup venv up down status demo test test-fast lint bench clean-stack

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install system packages, TimescaleDB and the locked Python environment
	@bash deploy/local/install-system.sh
	@$(MAKE) --no-print-directory venv

venv:
	@$(UV) sync --frozen --quiet

up: setup ## start the local stack (TimescaleDB, Redis, Prefect) and apply migrations
	@$(REJUVE) up

down: ## stop the local stack (data is kept)
	@if [ -x $(REJUVE) ]; then $(REJUVE) down; fi

status: ## show each service, its address, pid and log
	@$(REJUVE) status

demo: setup ## set everything up and run the demo job on the local stack
	@$(REJUVE) demo

lint: venv ## ruff, mypy and the import layers (lint-imports: no cycles, no layer crossed)
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy
	@.venv/bin/lint-imports --no-cache

test: setup ## set everything up, then lint and run the test suite against the real stack
	@$(MAKE) --no-print-directory lint
	@$(REJUVE) up
	@.venv/bin/pytest

test-fast: venv ## the tests that need no running stack (pytest -m "not stack"), stack up or down
	@.venv/bin/pytest -m "not stack"

clean-stack: down ## delete this checkout's stack state (databases, keys, logs): cannot be undone
	@home=$$(.venv/bin/python -c 'from backend.settings import Settings; print(Settings().home)') && \
		case "$$home" in /var/lib/rejuve/stacks/*) rm -rf -- "$$home" && echo "removed $$home";; \
		*) echo "not removing $$home (outside /var/lib/rejuve/stacks)";; esac

bench: setup ## run the benchmarks in bench/ (tables printed, JSON in bench/results/)
	@$(REJUVE) up
	@shopt -s nullglob; for b in bench/*.py; do .venv/bin/python $$b || exit $$?; done
