"""Every test gets its own local store in a temporary directory and a fresh tracer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import routetrace
from routetrace.core import tracer as tracer_mod
from routetrace.core.tracer import Tracer

pytest_plugins = ["tests.fixtures.servers"]

_PREFIXES = ("MLFLOW_", "ROUTETRACE_", "OTEL_")


@pytest.fixture(autouse=True)
def tracer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tracer:
    for key in list(os.environ):
        if key.startswith(_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    # The test process is pytest's: routetrace must not take over its SIGTERM.
    monkeypatch.setenv("ROUTETRACE_SIGNAL_HANDLERS", "false")
    # The next test's reset() flushes (briefly) and stops this tracer's workers.
    return tracer_mod.reset()


@pytest.fixture
def store(tracer: Tracer):
    return tracer.backend


@pytest.fixture
def reset_tracer(monkeypatch: pytest.MonkeyPatch):
    """Call with env overrides to rebuild the tracer from a changed environment."""

    def _reset(**env: str) -> Tracer:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return tracer_mod.reset()

    return _reset


def traces_of(experiment: str | None = None, **kwargs) -> list[routetrace.Trace]:
    assert routetrace.flush(timeout=30), "flush timed out"
    return routetrace.search_traces(experiment, max_results=10_000, **kwargs, return_type="list")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio."""
    return "asyncio"
