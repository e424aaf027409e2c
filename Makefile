# Two entry points for a fresh machine: `make demo` and `make test`. Everything else
# (the virtualenv, the install) is a prerequisite they build when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo ui test lint bench clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Start the local Billwerk sandbox, load all four assets into DuckDB, print row counts.
demo: $(STAMP)
	$(BIN)/python -m billwerk_dagster.demo

## The Dagster UI on the demo's warehouse, with the sandbox running behind it.
ui: $(STAMP)
	$(BIN)/python -m billwerk_dagster.demo --ui

## Lint and types, then the whole test suite (its summary is the last line printed).
test: $(STAMP)
	$(BIN)/ruff check billwerk_dagster billwerk_dagster_tests bench
	$(BIN)/ruff format --check billwerk_dagster billwerk_dagster_tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

## The benchmark: plain fetch versus the materialization, 20k and 200k invoices at 0 and
## 200 ms latency; results in bench/results/. Options through ARGS, e.g.
## make bench ARGS="--invoices 20000 --latency-ms 0".
bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) data
