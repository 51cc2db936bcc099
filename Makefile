# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a building block.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
IOC := $(VENV)/bin/ioc

.PHONY: help setup demo up test unit integration check lint typecheck format bench clean console

help:
	@echo "make demo   - set up everything and run the center with a simulated fleet"
	@echo "make test   - set up everything and run the whole test suite"
	@echo "make check  - ruff + mypy"

setup:
	@bash scripts/setup.sh

demo: setup
	$(IOC) demo

up: setup
	$(IOC) up

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup
	$(PY) -m pytest -q tests/integration

check: setup lint typecheck

lint:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck:
	$(VENV)/bin/mypy .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The live console's front-end (api/console/) built into api/static/console/, which is committed: only a change to
# the console needs Node.js (npm ci installs the pinned packages of api/console/package-lock.json).
console:
	cd api/console && npm ci --no-audit --no-fund && npm run build

bench: setup
	$(IOC) bench ingest --seconds 60 --json bench-ingest.json

clean:
	rm -rf .runtime/test-* .mypy_cache .ruff_cache .pytest_cache
