"""The MLflow server stops for 10 s under load, through the middleware, and comes back.

Requests go through ``TracingMiddleware`` in-process (a paced loop, ~12 requests/s; the
server, one worker on SQLite, writes ~27 traces/s here (docs/backends.md)) while the
tracer exports to a real ``mlflow server``. The server is stopped, stays down 10 s, and is
started again on the same port and store. No request fails or changes (status and body checked
on every one); after the flush, every request's trace (its id taken from the ``x-trace-id``
response header) is on the server exactly once, and nothing was dropped, spooled for good or
lost. The colleague's backend-level test (tests/backends/test_mlflow_server.py) does this for
``@trace`` calls with a longer load phase; this one is the middleware's path, kept short.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import routetrace
from routetrace.middleware import TracingMiddleware
from routetrace.tracing.destination import Experiment
from tests.fixtures.servers import wait_until
from tests.middleware.conftest import drive, make_scope

OUTAGE_SECONDS = 10.0


@pytest.mark.slow
def test_mlflow_server_outage_through_the_middleware(mlflow_tracking) -> None:
    server = mlflow_tracking
    experiment = f"outage-{uuid.uuid4().hex[:8]}"

    async def chat(request: Request) -> JSONResponse:
        with routetrace.start_span("model") as span:
            span.set_inputs({"session": request.path_params["session"]})
        return JSONResponse({"echo": await request.json()})

    app = Starlette(routes=[Route("/chat/{session}", chat, methods=["POST"])])
    app.add_middleware(TracingMiddleware, config={
        "trace_id_header": "x-trace-id",
        "routes": [{"path": "/chat/{session}", "experiment": experiment}]})

    trace_ids: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    async def one(i: int) -> None:
        body = b'{"i": %d}' % i
        sent = await drive(app, make_scope("POST", f"/chat/{i}", headers=[
            (b"content-type", b"application/json")]), [body])
        if sent.status != 200 or sent.body != b'{"echo":{"i":%d}}' % i:
            failures.append(f"{i}: {sent.status} {sent.body!r}")
        trace_ids.append(sent.header(b"x-trace-id").decode())

    async def load() -> None:
        i = 0
        while not stop.is_set():
            try:
                await one(i)
            except BaseException as exc:  # a request must never fail
                failures.append(f"{i}: {exc!r}")
            i += 1
            await asyncio.sleep(0.08)  # pacing (~12/s: the server takes ~27/s), not sync

    asyncio.run(one(-1))  # the experiment is created while the server is up
    assert routetrace.flush(timeout=30)
    thread = threading.Thread(target=lambda: asyncio.run(load()), name="load")
    thread.start()
    try:
        wait_until(lambda: len(trace_ids) > 40, 30, what="load running")
        server.stop()
        down_at = time.monotonic()
        wait_until(lambda: time.monotonic() - down_at >= OUTAGE_SECONDS, OUTAGE_SECONDS + 5,
                   interval=0.25, what="the outage")
        during = len(trace_ids)
        server.start()
        wait_until(lambda: len(trace_ids) > during + 40, 60, what="load after the restart")
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    flushed_at = time.monotonic()
    assert routetrace.flush(timeout=90), routetrace.get_export_stats()
    print(f"flush after the load took {time.monotonic() - flushed_at:.1f}s")
    stats = routetrace.get_export_stats()
    assert stats["dropped"] == 0 and stats["failed"] == 0 and stats["pending"] == 0, stats
    assert stats["retried"] > 0, stats  # the outage was seen by the exporter
    backend = routetrace._get_tracer().backend
    exp_id = backend.resolve_experiment(Experiment(name=experiment), create=False).experiment_id
    arrived = [t.info.trace_id for t in backend.search_traces(
        experiment_ids=[exp_id], max_results=100_000, include_spans=False)]
    assert len(arrived) == len(set(arrived))  # once each
    assert len(set(trace_ids)) == len(trace_ids)
    assert sorted(arrived) == sorted(trace_ids)
    print(f"\noutage: {len(trace_ids)} requests ({during} before the restart), "
          f"{len(arrived)} traces on the server; {stats}")
