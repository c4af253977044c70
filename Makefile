# Two commands on a fresh machine: `make demo` and `make test`.
# Both use .venv: `make demo` installs only what the demo needs (the `demo` extra);
# `make test` installs the test and dev set on top of the same venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# One stamp per install level and pyproject.toml checksum: an edit to pyproject reinstalls.
DEMO_STAMP := $(VENV)/.installed-demo-$(SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(SUM)

.PHONY: demo ui test lint bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The dev set contains the demo set, so installing it also satisfies the demo stamp.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SUM)' -delete
	touch $(DEMO_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SUM)' -delete
	touch $(DEMO_STAMP) $(DEV_STAMP)

venv: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/routetrace demo

ui: $(DEMO_STAMP)
	$(BIN)/routetrace ui

test: $(DEV_STAMP)
	$(BIN)/ruff check routetrace tests benchmarks examples
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The peers (ddtrace, logfire, Sentry, the OTLP exporter) come from the bench extra, installed
# here only; wrk, when on PATH (`apt-get install wrk`), drives the over-HTTP load.
bench: $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
