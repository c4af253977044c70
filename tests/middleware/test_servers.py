"""Real servers, where the server matters: uvicorn (in a thread) and gunicorn (processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

import routetrace
from routetrace.middleware import TracingMiddleware
from tests.conftest import traces_of
from tests.fixtures.servers import free_port, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def concurrency_app() -> FastAPI:
    app = FastAPI()

    async def work(kind: str, i: int) -> dict[str, object]:
        with routetrace.start_span("work") as span:
            span.set_inputs({"kind": kind, "i": i})
            await asyncio.sleep(0)  # let the other requests interleave inside the span
            with routetrace.start_span("inner") as inner:
                inner.set_attribute("i", i)
                await asyncio.sleep(0)
        return {"kind": kind, "i": i, "trace": routetrace.get_active_trace_id()}

    @app.get("/a/{i}")
    async def a(i: int) -> dict[str, object]:
        return await work("a", i)

    @app.post("/b/{i}")
    async def b(i: int) -> dict[str, object]:
        return await work("b", i)

    app.add_middleware(TracingMiddleware, config={
        "routes": [{"path": "/a/{i}", "experiment": "A"},
                   {"path": "/b/{i}", "experiment": "B"}],
    })
    return app


@pytest.fixture
def uvicorn_server() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(concurrency_app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="uvicorn start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def test_hundreds_of_concurrent_mixed_requests_never_mix(uvicorn_server: str) -> None:
    n = 400

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=uvicorn_server, limits=limits,
                                     timeout=60) as client:
            return await asyncio.gather(*(
                client.get(f"/a/{i}") if i % 2 == 0 else client.post(f"/b/{i}")
                for i in range(n)
            ))

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    by_trace = {r.json()["trace"]: r for r in responses}
    assert len(by_trace) == n  # one trace per request
    for r in responses:
        assert r.headers["x-trace-id"] == r.json()["trace"]

    for kind, experiment in (("a", "A"), ("b", "B")):
        traces = traces_of(experiment)
        assert len(traces) == n // 2
        for trace in traces:
            root = trace.data.spans[0]
            assert root.name == f"{'GET' if kind == 'a' else 'POST'} /{kind}/{{i}}"
            i = int(root.inputs["path"].rsplit("/", 1)[1])
            work = next(s for s in trace.data.spans if s.name == "work")
            inner = next(s for s in trace.data.spans if s.name == "inner")
            assert work.inputs == {"kind": kind, "i": i}
            assert inner.attributes["i"] == i
            assert inner.parent_id == work.span_id
            assert by_trace[trace.info.trace_id].json()["i"] == i


@pytest.mark.slow
def test_gunicorn_workers_write_to_one_store(tmp_path: Path) -> None:
    """Two pre-forked workers running examples/flask_app.py; SIGTERM flushes both."""
    port = free_port()
    store = os.environ["MLFLOW_TRACKING_URI"]
    env = {**os.environ, "ROUTETRACE_SIGNAL_HANDLERS": "true",
           "ROUTETRACE_CONFIG": str(EXAMPLES / "routetrace.toml")}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLES), "-w", "2", "--preload",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "flask_app:app"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 60, what="gunicorn start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for i in range(20):
                r = client.post("/math/add", json={"a": i, "b": 1})
                assert r.json()["result"] == i + 1
            chat = client.post("/chat/1", json={"message": "hi there"})
            assert chat.text.endswith("data: [DONE]\n\n")
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode(errors="replace")
    assert server.returncode == 0, output
    routetrace.set_tracking_uri(store)
    assert len(traces_of("math-agent")) == 20
    (chat_trace,) = traces_of("chat-agent")
    assert [s.name for s in chat_trace.data.spans] == ["POST /chat/<conversation>", "generate"]


def test_a_client_gone_mid_upload_under_uvicorn_is_an_error_with_clientdisconnect() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{len(await request.body())} bytes")

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    app.add_middleware(TracingMiddleware)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-upload", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, what="uvicorn start")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                         + b"x" * 1000)
            wait_until(lambda: routetrace.get_export_stats().get("live_traces") == 1
                       or traces_of(), 10, what="the request to start")
        wait_until(lambda: traces_of(), 10, what="the trace of the cut upload")
    finally:
        server.should_exit = True
        thread.join(30)
    (trace,) = traces_of()
    root = trace.data.spans[0]
    assert trace.info.state == "ERROR"
    assert [e.attributes["exception.type"] for e in root.events] == ["ClientDisconnect"]
    assert root.attributes["routetrace.client_disconnected"] is True
