"""Queue overflow through the middleware: a tiny queue in front of a backend that blocks.

One export worker, a queue of 5. The first request's trace is taken by the worker, which then
blocks inside the backend's write; the next 99 requests fill the queue (5) and the other 94
are dropped and counted. Released, the worker writes 1 + 5. Exactly: written 6, dropped 94,
written + dropped == 100 produced, 6 traces in the store; every response is the app's. The
drop count is readable from ``routetrace.get_export_stats()`` in the process and, after it
shut down, from ``routetrace stats`` (another process).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import routetrace
from routetrace.middleware import TracingMiddleware
from tests.conftest import traces_of
from tests.middleware.conftest import drive, make_scope

PRODUCED = 100
QUEUE = 5


async def app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_overflow_counts_are_exact_and_visible(reset_tracer, tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    tracer = reset_tracer(MLFLOW_TRACKING_URI=store_uri,
                          MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE=str(QUEUE),
                          MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS="1")
    backend = tracer.backend
    entered, release = threading.Event(), threading.Event()
    real_write = backend.write_traces

    def blocked_write(experiment, traces):
        entered.set()
        assert release.wait(60), "the test never released the backend"
        return real_write(experiment, traces)

    backend.write_traces = blocked_write  # type: ignore[method-assign]
    traced = TracingMiddleware(app, config={"experiment": "overflow"})

    def request(i: int) -> bytes:
        sent = asyncio.run(drive(traced, make_scope("GET", f"/item/{i}")))
        assert sent.status == 200
        return sent.body

    assert request(0) == b"/item/0"
    assert entered.wait(30), "the export worker never reached the backend"
    bodies = [request(i) for i in range(1, PRODUCED)]
    assert bodies == [f"/item/{i}".encode() for i in range(1, PRODUCED)]
    stats = routetrace.get_export_stats()
    assert stats["dropped"] == PRODUCED - 1 - QUEUE
    release.set()
    assert routetrace.flush(timeout=30)
    stats = routetrace.get_export_stats()
    assert stats["written"] == 1 + QUEUE
    assert stats["dropped"] == PRODUCED - 1 - QUEUE
    assert stats["written"] + stats["dropped"] == PRODUCED
    assert stats["pending"] == 0 and stats["spooled"] == 0 and stats["failed"] == 0
    paths = sorted(t.root_span.inputs["path"] for t in traces_of("overflow"))
    assert paths == sorted(f"/item/{i}" for i in range(QUEUE + 1))

    # The process shuts down (as at exit); another process reads the counts with the CLI.
    assert tracer.shutdown("exit")
    cli = Path(sys.executable).parent / "routetrace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = store_uri
    out = subprocess.run([str(cli), "stats", "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["store"]["traces"] == 1 + QUEUE
    assert data["export"]["dropped"] == PRODUCED - 1 - QUEUE
    assert data["export"]["written"] == 1 + QUEUE
    text = subprocess.run([str(cli), "stats"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert f"{PRODUCED - 1 - QUEUE} dropped" in text.stdout, text.stdout
