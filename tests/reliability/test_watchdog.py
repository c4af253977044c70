"""A stuck handler behind the middleware: the route's ``timeout_seconds`` feeds the watchdog.

The handler opens a span and waits on an event nobody sets until the test sees the trace in
the store. Within the route's timeout + the check interval the trace is exported with ERROR
(root and child both ended with a ``timeout`` event), exactly once; when the handler finally
answers, the response is the app's own and nothing is written a second time.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import routetrace
from routetrace.middleware import TracingMiddleware
from tests.conftest import traces_of

TIMEOUT = 1.0
INTERVAL = 0.2
STORE_SLACK = 1.0  # writing the aborted trace, on a loaded 2-core CI machine


def test_stuck_handler_exported_once_with_error(reset_tracer) -> None:
    reset_tracer(MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS=str(INTERVAL))
    release = asyncio.Event()

    async def stuck(request: Request) -> PlainTextResponse:
        with routetrace.start_span("waiting for the model") as span:
            span.set_inputs({"q": "never answered in time"})
            await asyncio.wait_for(release.wait(), 60)
            span.set_outputs({"late": True})
        with routetrace.start_span("after the abort"):  # a child of an aborted trace: no-op
            pass
        return PlainTextResponse("late but fine")

    app = Starlette(routes=[Route("/stuck", stuck)])
    app.add_middleware(TracingMiddleware, config={
        "routes": [{"path": "/stuck", "experiment": "stuck", "timeout_seconds": TIMEOUT}]})

    def stored() -> list[routetrace.Trace]:
        return routetrace.search_traces("stuck", max_results=10, return_type="list")

    async def main() -> tuple[httpx.Response, float, list[routetrace.Trace]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            started = time.monotonic()
            request = asyncio.create_task(client.get("/stuck"))
            deadline = started + TIMEOUT + INTERVAL + STORE_SLACK
            found: list[routetrace.Trace] = []
            while not found:  # poll the store with a deadline
                assert time.monotonic() < deadline, "no aborted trace within timeout+interval"
                assert not request.done()
                await asyncio.sleep(0.02)  # the poll interval; the condition is the store
                found = stored()
            arrived = time.monotonic() - started
            release.set()
            return await request, arrived, found

    response, arrived, found = asyncio.run(main())
    assert response.status_code == 200 and response.text == "late but fine"
    assert arrived >= TIMEOUT
    (trace,) = found
    assert trace.info.state == "ERROR"
    root = trace.root_span
    assert root.name == "GET /stuck"
    assert (root.end_time_ns - root.start_time_ns) / 1e9 <= TIMEOUT + INTERVAL + 0.3
    assert sorted(s.name for s in trace.data.spans) == ["GET /stuck", "waiting for the model"]
    for span in trace.data.spans:
        assert span.status.status_code == "ERROR"
        assert [e.name for e in span.events] == ["timeout"]
    # The handler's late end() calls and its late child changed nothing; exported once.
    (again,) = traces_of("stuck")
    assert again.to_dict() == trace.to_dict()
    stats = routetrace.get_export_stats()
    assert stats["written"] == 1 and stats["watchdog_aborted"] == 1
