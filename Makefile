# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates (or reuses) .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/routetrace demo

test: $(STAMP)
	$(BIN)/ruff check routetrace tests benchmarks examples
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The peers (ddtrace, logfire, Sentry, the OTLP exporter) come from the bench extra, installed
# here only; wrk, when on PATH (`apt-get install wrk`), drives the over-HTTP load.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
