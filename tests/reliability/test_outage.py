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
import random
import threading
import time
import uuid

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import routetrace
from routetrace.backends.mlflow_server import MlflowServerBackend
from routetrace.core.destination import Experiment
from routetrace.core.settings import load_settings
from routetrace.middleware import TracingMiddleware
from tests.fixtures.servers import wait_until
from tests.middleware.conftest import drive, make_scope
from tests.viewer._data import make_trace

OUTAGE_SECONDS = 10.0
# A failing server is probed at least every 2 s (x1.5 jitter): found back within this.
FIND_RECOVERED_WITHIN = 5.0
QUIET_SECONDS = 20.0  # the recovery test's outage goes on this long after the requests stop


def _chat_app(experiment: str) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        with routetrace.start_span("model") as span:
            span.set_inputs({"session": request.path_params["session"]})
        return JSONResponse({"echo": await request.json()})

    app = Starlette(routes=[Route("/chat/{session}", chat, methods=["POST"])])
    app.add_middleware(TracingMiddleware, config={
        "trace_id_header": "x-trace-id",
        "routes": [{"path": "/chat/{session}", "experiment": experiment}]})
    return app


def _requester(app: Starlette, trace_ids: list[str], failures: list[str]):
    async def one(i: int) -> None:
        body = b'{"i": %d}' % i
        sent = await drive(app, make_scope("POST", f"/chat/{i}", headers=[
            (b"content-type", b"application/json")]), [body])
        if sent.status != 200 or sent.body != b'{"echo":{"i":%d}}' % i:
            failures.append(f"{i}: {sent.status} {sent.body!r}")
        trace_ids.append(sent.header(b"x-trace-id").decode())

    return one


def _on_server(experiment: str) -> list[str]:
    backend = routetrace._get_tracer().backend
    exp_id = backend.resolve_experiment(Experiment(name=experiment), create=False).experiment_id
    return [t.info.trace_id for t in backend.search_traces(
        experiment_ids=[exp_id], max_results=100_000, include_spans=False)]


@pytest.mark.slow
def test_mlflow_server_outage_through_the_middleware(mlflow_tracking) -> None:
    server = mlflow_tracking
    experiment = f"outage-{uuid.uuid4().hex[:8]}"
    app = _chat_app(experiment)
    trace_ids: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    one = _requester(app, trace_ids, failures)

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
    arrived = _on_server(experiment)
    assert len(arrived) == len(set(arrived))  # once each
    assert len(set(trace_ids)) == len(trace_ids)
    assert sorted(arrived) == sorted(trace_ids)
    print(f"\noutage: {len(trace_ids)} requests ({during} before the restart), "
          f"{len(arrived)} traces on the server; {stats}")


def _server_write_time(url: str, count: int) -> float:
    """Seconds this server takes, right now, to take ``count`` traces in one batch from a
    client of its own (the pace a backlog cannot beat)."""
    other = MlflowServerBackend.from_uri(url, load_settings({}))
    try:
        info = other.resolve_experiment(Experiment(name=f"pace-{uuid.uuid4().hex[:8]}"))
        base = random.getrandbits(31)  # span ids hold n in 8 hex digits
        now = int(time.time() * 1000)
        traces = [make_trace(base + i, info.experiment_id, "pace", now,
                             [("pace", "UNKNOWN", None, 0, 1, "OK")]) for i in range(count)]
        started = time.monotonic()
        other.write_traces(info, traces)
        return time.monotonic() - started
    finally:
        other.close()


@pytest.mark.slow
def test_an_outage_backlog_is_retried_within_seconds_of_the_server_answering_again(
        mlflow_tracking) -> None:
    """Requests keep coming for 10 s while the server is down, then stop, and the server
    stays down 20 s more: nothing new arrives to find it back, so the retry list's own
    probing must find it within seconds (before: its backoff, up to 45 s), and the backlog
    goes in one batch or a few."""
    server = mlflow_tracking
    experiment = f"recovery-{uuid.uuid4().hex[:8]}"
    trace_ids: list[str] = []
    failures: list[str] = []
    one = _requester(_chat_app(experiment), trace_ids, failures)

    async def load_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        i = 0
        while time.monotonic() < until:
            await one(i)
            i += 1
            await asyncio.sleep(0.05)  # pacing (~20/s), not synchronisation

    asyncio.run(one(-1))  # the experiment is created while the server is up
    assert routetrace.flush(timeout=30)
    # When each span upload that the server accepted was sent (observed on the real
    # client's traffic, nothing replaced).
    accepted: list[float] = []

    def sent(request) -> None:
        request.extensions["routetrace_test_sent"] = time.monotonic()

    def answered(response) -> None:
        if response.request.url.path == "/v1/traces" and response.status_code == 200:
            accepted.append(response.request.extensions["routetrace_test_sent"])

    client = routetrace._get_tracer().backend._http()
    client.event_hooks["request"].append(sent)
    client.event_hooks["response"].append(answered)
    server.stop()
    down_at = time.monotonic()
    asyncio.run(load_for(OUTAGE_SECONDS))
    held_back = len(trace_ids) - 1
    # Then a quiet outage: the retry list keeps trying alone, its backoff growing.
    wait_until(lambda: time.monotonic() - down_at >= OUTAGE_SECONDS + QUIET_SECONDS,
               QUIET_SECONDS + 5, interval=0.25, what="the quiet part of the outage")
    server.start()  # returns once /health answers
    recovered_at = time.monotonic()
    assert routetrace.flush(timeout=180), routetrace.get_export_stats()
    took = time.monotonic() - recovered_at
    found = max(0.0, min(accepted) - recovered_at)
    pace = _server_write_time(server.url, held_back)
    stats = routetrace.get_export_stats()
    print(f"\nrecovery: {held_back} traces held back by a "
          f"{OUTAGE_SECONDS + QUIET_SECONDS:g}s outage; the "
          f"server was tried again {found:.1f}s after it answered, in {len(accepted)} span "
          f"upload(s); all written after {took:.1f}s (a warm server takes {pace:.1f}s for as "
          f"many); {stats}")
    assert failures == []
    assert stats["spooled"] == 0 and stats["dropped"] == 0 and stats["failed"] == 0, stats
    assert sorted(_on_server(experiment)) == sorted(trace_ids)
    assert found < FIND_RECOVERED_WITHIN, f"the server was tried again after {found:.1f}s"
    assert len(accepted) < 5, f"the backlog went in {len(accepted)} span uploads"
