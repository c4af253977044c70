"""SIGTERM under load, with real servers: every request that got its response has its trace
in the store, exactly once; a trace made in a gunicorn master before the fork is stored once;
every process exits by itself within a bound.

Each test sends 500 ``GET /r/{i}`` requests (bounded concurrency) and sends SIGTERM to the
server once 250 responses are back, while the rest are still in flight or not yet sent.
Requests the server refused after the signal have no response and no trace.
"""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

from tests.reliability._harness import root_names, run_load, start_server, stored_request_ids

N = 500
SIGTERM_AT = 250


def _check(store: str, completed: set[int], sent: int) -> None:
    stored = stored_request_ids(store)
    duplicates = {i: c for i, c in stored.items() if c != 1}
    assert duplicates == {}, f"traces stored more than once: {duplicates}"
    missing = completed - set(stored)
    assert missing == set(), f"{len(missing)} completed requests have no trace: {sorted(missing)}"
    # A trace without a complete response is possible only for a request the server was
    # still answering when the client gave up; with graceful shutdown there are none.
    assert set(stored) == completed
    assert SIGTERM_AT <= len(completed) <= sent
    print(f"completed {len(completed)} of {sent}; stored {sum(stored.values())}")


def test_uvicorn_sigterm_under_load(tmp_path: Path) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown (``capture_signals``), so the
    process dies by the signal as a bare app would: the flush has to come from the
    middleware's lifespan shutdown, before that."""
    store = str(tmp_path / "store")
    server = start_server(["uvicorn", "tests.reliability.server_apps:starlette_app",
                           "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
                           "--lifespan", "on", "--log-level", "warning"], store, tmp_path)
    try:
        load = run_load(server.url, N, concurrency=16, at=SIGTERM_AT,
                        action=lambda: server.proc.send_signal(signal.SIGTERM))
        code = server.wait_exit(30)
    finally:
        server.kill()
    # uvicorn restores the default handler and re-raises: no atexit hook runs after this,
    # so every trace below was written by the lifespan-shutdown flush.
    assert code == -signal.SIGTERM, server.output()
    assert "Traceback" not in server.output(), server.output()
    _check(store, load.completed, N)


def _gunicorn(tmp_path: Path, target: str, *extra: str):
    store = str(tmp_path / "store")
    server = start_server(
        ["gunicorn", "--preload", "-w", "2", *extra, "-b", "127.0.0.1:{port}",
         "--graceful-timeout", "20", "--log-level", "warning", target],
        store, tmp_path, RELIABILITY_PRELOAD_TRACE="made-in-master-before-fork",
    )
    return store, server


@pytest.mark.parametrize("worker", [
    pytest.param("sync", id="sync workers, Flask through WSGITracingMiddleware"),
    pytest.param("uvicorn", id="UvicornWorker, Starlette through TracingMiddleware"),
])
def test_gunicorn_preload_two_workers_sigterm_under_load(tmp_path: Path, worker: str) -> None:
    if worker == "uvicorn":
        if importlib.util.find_spec("uvicorn.workers") is None:
            if importlib.util.find_spec("uvicorn_worker") is None:
                pytest.skip("neither uvicorn.workers nor the uvicorn-worker package is installed")
            extra = ("-k", "uvicorn_worker.UvicornWorker")
        else:
            extra = ("-k", "uvicorn.workers.UvicornWorker")
        target = "tests.reliability.server_apps:starlette_app"
    else:
        extra = ("-k", "sync")
        target = "tests.reliability.server_apps:flask_app"
    store, server = _gunicorn(tmp_path, target, *extra)
    try:
        load = run_load(server.url, N, concurrency=8, at=SIGTERM_AT,
                        action=lambda: server.proc.send_signal(signal.SIGTERM))
        code = server.wait_exit(60)
    finally:
        server.kill()
    assert code == 0, server.output()
    assert "Traceback" not in server.output(), server.output()
    _check(store, load.completed, N)
    # The master's trace, made at import under --preload: once, not once per worker.
    assert root_names(store, "preload") == {"made-in-master-before-fork": 1}
