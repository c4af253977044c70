from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import routetrace
from routetrace.core.tracer import Tracer
from routetrace.middleware import TracingMiddleware, guard
from routetrace.middleware.capture import Exchange
from tests.conftest import traces_of
from tests.middleware.conftest import call, drive, make_scope, only_trace

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def get(app: Any, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.request(method, path, **kwargs)

    return asyncio.run(go())


# -- routing into experiments, span names ---------------------------------------------------
def test_fastapi_routes_each_endpoint_to_its_experiment() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/math/{op}")
    async def math(op: str) -> dict[str, str]:
        with routetrace.start_span("compute", span_type="TOOL") as span:
            span.set_inputs({"op": op})
        return {"op": op}

    @app.get("/chat/{room}/messages")
    async def chat(room: str) -> dict[str, str]:
        return {"room": room}

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    app.add_middleware(TracingMiddleware, config={
        "experiment": "web", "exclude": ["/healthz"],
        "routes": [{"path": "/math/{op}", "methods": ["POST"], "experiment": "math-agent",
                    "span_type": "CHAIN", "tags": {"team": "m"}},
                   {"path": "/chat/**", "experiment": "chat-agent"}],
    })
    assert get(app, "/math/add", "POST").json() == {"op": "add"}
    assert get(app, "/chat/7/messages").status_code == 200
    assert get(app, "/healthz").status_code == 200
    assert get(app, "/other").status_code == 404

    math_trace = only_trace("math-agent")
    root = math_trace.data.spans[0]
    assert root.name == "POST /math/{op}"
    assert root.span_type == "CHAIN"
    assert root.attributes["http.route"] == "/math/{op}"
    assert math_trace.info.tags["route"] == "/math/{op}"
    assert math_trace.info.tags["team"] == "m"
    compute = next(s for s in math_trace.data.spans if s.name == "compute")
    parents = {s.span_id: s.parent_id for s in math_trace.data.spans}
    ancestor = compute.parent_id  # FastAPI's own OpenTelemetry spans may sit in between
    while ancestor is not None and ancestor != root.span_id:
        ancestor = parents[ancestor]
    assert ancestor == root.span_id

    chat_trace = only_trace("chat-agent")
    assert chat_trace.data.spans[0].name == "GET /chat/{room}/messages"
    assert routetrace.search_traces("chat-agent", filter_string="tags.route = '/chat/**'",
                                    return_type="list")

    web = only_trace("web")  # the 404: no framework route, no rule: the method alone
    assert web.data.spans[0].name == "GET"
    assert web.data.spans[0].attributes["http.response.status_code"] == 404
    assert web.info.state == "OK"
    assert len(traces_of()) == 3  # /healthz never traced


@pytest.mark.parametrize(
    ("config", "path", "name"),
    [
        pytest.param({"routes": [{"path": "/users/{id}"}]}, "/users/1", "GET /users/{id}",
                     id="rule pattern"),
        pytest.param({"routes": [{"path": "/files/**"}]}, "/files/a/b", "GET /files/**",
                     id="glob pattern"),
        pytest.param({}, "/users/1", "GET", id="no rule: method alone, never the raw path"),
    ],
)
def test_span_name_without_a_framework_route(hello_app: Any, config: dict, path: str,
                                             name: str) -> None:
    call(TracingMiddleware(hello_app, config=config), "GET", path)
    assert only_trace().data.spans[0].name == name


def test_starlette_mount_prefix_in_span_name() -> None:
    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse("x")

    app = Starlette(routes=[Mount("/api", routes=[Route("/items/{id}", item)])])
    app.add_middleware(TracingMiddleware)
    assert get(app, "/api/items/3").text == "x"
    assert only_trace().data.spans[0].name == "GET /api/items/{id}"


def test_set_route_overrides_the_name(hello_app: Any) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        routetrace.middleware.set_route(scope, "/custom/{x}")
        await hello_app(scope, receive, send)

    call(TracingMiddleware(app), "GET", "/custom/1")
    assert only_trace().data.spans[0].name == "GET /custom/{x}"


def test_root_span_is_opentelemetrys_current_span_through_the_fast_path(
        hello_app: Any) -> None:
    """The fast path (OpenTelemetry's ContextVar set directly) must be the one in use: its
    key carries a uuid suffix, and comparing it to the bare name silently disabled it."""
    from opentelemetry import trace as otel_trace

    seen = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(otel_trace.get_current_span())
        await hello_app(scope, receive, send)

    middleware = TracingMiddleware(app)
    assert middleware._otel_var is not None
    call(middleware, "GET", "/hello")
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN  # restored afterwards
    span = only_trace().data.spans[0]
    assert seen[0].get_span_context().span_id == int(span.span_id, 16)


def test_concurrent_requests_keep_their_destinations() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)  # interleave the requests
        with routetrace.start_span("work") as span:
            span.set_inputs({"path": scope["path"]})
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = TracingMiddleware(app, config={"routes": [{"path": "/a/*", "experiment": "A"},
                                                   {"path": "/b/*", "experiment": "B"}]})

    async def many() -> None:
        await asyncio.gather(*(drive(mw, make_scope("GET", f"/{'ab'[i % 2]}/{i}"))
                               for i in range(100)))

    asyncio.run(many())
    for exp in ("A", "B"):
        traces = traces_of(exp)
        assert len(traces) == 50
        for t in traces:
            root, work = t.data.spans
            assert work.inputs["path"] == root.inputs["path"]
            assert root.inputs["path"].startswith(f"/{exp.lower()}/")


# -- status ---------------------------------------------------------------------------------
def test_exception_is_error_and_propagates_unchanged() -> None:
    error = RuntimeError("boom")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        raise error

    with pytest.raises(RuntimeError) as info:
        call(TracingMiddleware(app))
    assert info.value is error
    trace = only_trace()
    assert trace.info.state == "ERROR"
    root = trace.data.spans[0]
    assert "RuntimeError: boom" in root.status.description
    assert [e.name for e in root.events] == ["exception"]


def test_exception_recorded_when_starlette_sends_the_500_first() -> None:
    """Wrapping the whole app: ServerErrorMiddleware sends a 500, then re-raises."""

    async def boom(request: Request) -> None:
        raise ValueError("bad")

    app = TracingMiddleware(Starlette(routes=[Route("/boom", boom)]))
    with pytest.raises(ValueError, match="bad"):
        call(app, "GET", "/boom")
    root = only_trace().data.spans[0]
    assert root.status.status_code == "ERROR"
    assert [e.name for e in root.events] == ["exception"]
    assert root.attributes["http.response.status_code"] == 500


@pytest.mark.parametrize(
    ("status", "state"),
    [pytest.param(200, "OK", id="200"), pytest.param(404, "OK", id="4xx is OK"),
     pytest.param(499, "OK", id="499"), pytest.param(500, "ERROR", id="500"),
     pytest.param(503, "ERROR", id="503")],
)
def test_status_codes(status: int, state: str) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"x"})

    assert call(TracingMiddleware(app)).status == status
    trace = only_trace()
    assert trace.info.state == state
    assert trace.data.spans[0].outputs["status_code"] == status


def test_app_returning_without_a_response_is_error() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        return None

    asyncio.run(TracingMiddleware(app)(make_scope(), None, None))  # type: ignore[arg-type]
    assert only_trace().info.state == "ERROR"


# -- when the span ends ---------------------------------------------------------------------
def test_streaming_response_ends_at_last_chunk_not_at_handler_return() -> None:
    stamps: dict[str, int] = {}

    async def stream():
        for i in range(3):
            yield f"chunk {i}\n"
            await asyncio.sleep(0.01)
        stamps["last_chunk"] = time.time_ns()

    async def endpoint(request: Request) -> StreamingResponse:
        stamps["handler_returned"] = time.time_ns()
        return StreamingResponse(stream(), media_type="text/plain")

    app = Starlette(routes=[Route("/s", endpoint)])
    app.add_middleware(TracingMiddleware, config={"capture_body": True})
    sent = call(app, "GET", "/s")
    assert sent.body == b"chunk 0\nchunk 1\nchunk 2\n"
    root = only_trace().data.spans[0]
    assert root.end_time_ns >= stamps["last_chunk"] > stamps["handler_returned"]
    assert root.outputs["body"] == "chunk 0\nchunk 1\nchunk 2\n"


def test_response_with_trailers_ends_at_the_last_trailers_not_the_body() -> None:
    stamps: dict[str, int] = {}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        stamps["body_sent"] = time.time_ns()
        await asyncio.sleep(0.02)
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")],
                    "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})

    sent = call(TracingMiddleware(app), "GET", "/t")
    assert [m["type"] for m in sent.messages][-2:] == ["http.response.trailers"] * 2
    trace = only_trace()
    assert trace.info.state == "OK"
    assert trace.data.spans[0].end_time_ns >= stamps["body_sent"] + 20_000_000


def test_a_body_sent_without_a_start_is_an_error_trace() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"no start"})

    sent = call(TracingMiddleware(app), "GET", "/nostart")
    assert [m["type"] for m in sent.messages] == ["http.response.body"]  # passed on as sent
    trace = only_trace()
    assert trace.info.state == "ERROR"
    assert trace.data.spans[0].status.description == "the app sent no response"


def test_server_sent_events_captured_and_ended_at_last_event() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def gen():
            for i in range(3):
                with routetrace.start_span(f"event {i}"):
                    yield f"data: {i}\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    app.add_middleware(TracingMiddleware, config={"capture_body": 1024})
    sent = call(app, "GET", "/events")
    assert sent.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    trace = only_trace()
    root = trace.data.spans[0]
    assert root.outputs["body"] == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    event_spans = [s for s in trace.data.spans if s.name.startswith("event")]
    assert len(event_spans) == 3
    assert all(s.end_time_ns <= root.end_time_ns for s in event_spans)


def test_client_disconnect_ends_the_span() -> None:
    """A stream that only stops when the client goes away (an endless SSE feed)."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()  # the request body
        while message["type"] != "http.disconnect":
            message = await receive()

    sent = call(TracingMiddleware(app), disconnect_early=True)
    assert sent.body == b"first"
    root = only_trace().data.spans[0]
    assert root.attributes["routetrace.client_disconnected"] is True
    assert root.status.status_code != "ERROR"


@pytest.mark.parametrize("wrapping", ["add_middleware", "whole app"])
def test_a_client_gone_mid_upload_is_an_error_with_the_apps_exception(wrapping: str) -> None:
    # Starlette raises ClientDisconnect from request.body(); its ServerErrorMiddleware
    # answers 500 and re-raises.
    async def upload(request: Request) -> Response:
        body = await request.body()
        return PlainTextResponse(f"{len(body)} bytes")

    app: Any = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    if wrapping == "add_middleware":
        app.add_middleware(TracingMiddleware)
    else:
        app = TracingMiddleware(app)
    messages = [{"type": "http.request", "body": b"part one", "more_body": True},
                {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with pytest.raises(ClientDisconnect):
        asyncio.run(app(make_scope("POST", "/upload"), receive, send))
    assert sent[0]["status"] == 500
    trace = only_trace()
    root = trace.data.spans[0]
    assert trace.info.state == "ERROR"
    assert root.status.status_code == "ERROR"
    assert [(e.name, e.attributes["exception.type"]) for e in root.events] == [
        ("exception", "ClientDisconnect")]
    assert root.attributes["routetrace.client_disconnected"] is True


def test_background_task_does_not_hold_the_span_open() -> None:
    stamps: dict[str, int] = {}

    async def later() -> None:
        stamps["background_started"] = time.time_ns()
        await asyncio.sleep(0.05)

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("done", background=BackgroundTask(later))

    app = Starlette(routes=[Route("/bg", endpoint)])
    app.add_middleware(TracingMiddleware)
    assert call(app, "GET", "/bg").body == b"done"
    root = only_trace().data.spans[0]
    assert root.end_time_ns <= stamps["background_started"]
    assert root.end_time_ns - root.start_time_ns < 50_000_000


BACKGROUND_CONFIG = {"experiment": "web", "routes": [{"path": "/jobs", "experiment": "jobs"}]}


def test_background_task_spans_are_their_own_trace_in_the_requests_experiment() -> None:
    @routetrace.trace
    def send_email(to: str) -> str:
        return to

    async def audit() -> None:
        with routetrace.start_span("audit"):
            pass

    async def endpoint(request: Request) -> Response:
        response = PlainTextResponse("queued")
        response.background = BackgroundTask(send_email, "a@example.com")
        return response

    async def audited(request: Request) -> Response:
        return PlainTextResponse("queued", background=BackgroundTask(audit))

    app = Starlette(routes=[Route("/jobs", endpoint), Route("/audited", audited)])
    app.add_middleware(TracingMiddleware, config=BACKGROUND_CONFIG)
    assert call(app, "GET", "/jobs").body == b"queued"
    assert call(app, "GET", "/audited").body == b"queued"
    assert traces_of("Default") == []
    by_name = {t.data.spans[0].name: t for t in traces_of("jobs") + traces_of("web")}
    assert sorted(by_name) == ["GET /audited", "GET /jobs", "audit", "send_email"]
    assert by_name["send_email"].info.experiment_name == "jobs"  # the request's, not the default
    assert by_name["audit"].info.experiment_name == "web"
    for task, request in (("send_email", "GET /jobs"), ("audit", "GET /audited")):
        assert by_name[task].info.trace_metadata["routetrace.parentTraceId"] == (
            by_name[request].info.trace_id)
        assert "routetrace.parentTraceId" not in by_name[request].info.trace_metadata
    linked = routetrace.search_traces(experiment="jobs", filter_string=(
        f"metadata.`routetrace.parentTraceId` = '{by_name['GET /jobs'].info.trace_id}'"),
        return_type="list")
    assert [t.data.spans[0].name for t in linked] == ["send_email"]


def test_fastapi_background_tasks_land_in_the_requests_experiment_not_default() -> None:
    @routetrace.trace
    def send_email(to: str) -> str:
        return to

    app = FastAPI()

    @app.get("/jobs")
    def jobs(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(send_email, "a@example.com")
        return {"queued": True}

    app.add_middleware(TracingMiddleware, config=BACKGROUND_CONFIG)
    assert call(app, "GET", "/jobs").body == b'{"queued":true}'
    assert traces_of("Default") == []
    traces = {t.data.spans[0].name: t for t in traces_of("jobs")}
    (task,) = [t for name, t in traces.items() if name != "GET /jobs"]
    assert "send_email" in [s.name for s in task.data.spans]
    assert task.info.trace_metadata["routetrace.parentTraceId"] == (
        traces["GET /jobs"].info.trace_id)


def test_a_thread_not_handed_the_context_traces_into_the_tables_default_experiment() -> None:
    @routetrace.trace
    def resize(size: int) -> int:
        return size

    pool = ThreadPoolExecutor(1)

    async def endpoint(request: Request) -> Response:
        pool.submit(resize, 64).result()
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/jobs", endpoint)])
    app.add_middleware(TracingMiddleware, config=BACKGROUND_CONFIG)
    try:
        assert call(app, "GET", "/jobs").body == b"ok"
    finally:
        pool.shutdown()
    assert traces_of("Default") == []
    assert [t.data.spans[0].name for t in traces_of("web")] == ["resize"]
    assert [t.data.spans[0].name for t in traces_of("jobs")] == ["GET /jobs"]


def test_watchdog_aborts_a_stuck_handler(reset_tracer: Any) -> None:
    tracer = reset_tracer(MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS="0.02")

    async def stuck(scope: dict, receive: Any, send: Any) -> None:
        while tracer.live:  # stuck until the watchdog gives up on the trace
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    mw = TracingMiddleware(stuck, config={"routes": [{"path": "/slow",
                                                       "timeout_seconds": 0.1}]})
    assert call(mw, "GET", "/slow").body == b"late"  # the response is untouched
    trace = only_trace()
    assert trace.info.state == "ERROR"
    assert trace.info.trace_metadata["routetrace.aborted"] == "timeout"
    assert [e.name for e in trace.data.spans[0].events] == ["timeout"]
    assert routetrace.get_export_stats()["written"] == 1  # exported once


def test_a_queued_trace_does_not_keep_the_servers_callables_alive(
        hello_app: Any, tracer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The trace waits for the export worker with its exchange; the server's receive and send
    # (uvicorn: bound methods of the whole request cycle) must not wait with it, or every
    # queued trace keeps that cycle's objects alive for the garbage collector to walk.
    held: list[Any] = []
    monkeypatch.setattr(tracer.exporter.logger, "put", held.append)

    class Server:
        async def receive(self) -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(self, message: dict[str, Any]) -> None:
            pass

    server = Server()
    asyncio.run(TracingMiddleware(hello_app)(make_scope(), server.receive, server.send))
    alive = weakref.ref(server)
    del server
    gc.collect()
    assert len(held) == 1 and held[0].root._deferred is not None  # the trace still waits
    assert alive() is None


# -- capture --------------------------------------------------------------------------------
def test_headers_captured_and_credentials_redacted() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"set-cookie", b"session=s3cret"), (b"x-out", b"1")]})
        await send({"type": "http.response.body", "body": b""})

    mw = TracingMiddleware(app, config={"capture_headers": ["*"],
                                        "redact_headers": ["x-internal"],
                                        "redact_query": ["ssn"]})
    call(mw, query=b"q=cats&token=abc&SSN=123&api_key=k&x",
         headers=[(b"authorization", b"Bearer s3cret"), (b"cookie", b"a=s3cret"),
                  (b"x-api-key", b"s3cret"), (b"x-internal", b"s3cret"),
                  (b"user-agent", b"pytest"), (b"accept", b"a"), (b"accept", b"b")])
    root = only_trace().data.spans[0]
    text = str(root.inputs) + str(root.outputs) + str(root.attributes)
    assert "s3cret" not in text
    headers = root.inputs["headers"]
    assert headers["authorization"] == headers["cookie"] == headers["x-api-key"] == "REDACTED"
    assert headers["x-internal"] == "REDACTED"
    assert headers["accept"] == "a, b"
    assert root.outputs["headers"] == {"set-cookie": "REDACTED", "x-out": "1"}
    assert root.inputs["query"] == "q=cats&token=REDACTED&SSN=REDACTED&api_key=REDACTED&x"
    assert root.attributes["url.query"] == root.inputs["query"]
    assert root.attributes["user_agent.original"] == "pytest"


def test_redacted_host_and_user_agent_are_not_kept_for_attributes(hello_app: Any) -> None:
    # Regression: the first host / user-agent fed the span's attributes even when the table
    # redacted them, so a redacted value still reached the store.
    mw = TracingMiddleware(hello_app, config={"redact_headers": ["user-agent", "host"]})
    call(mw, headers=[(b"host", b"internal.s3cret:8443"), (b"user-agent", b"s3cret-agent")])
    root = only_trace().data.spans[0]
    assert "s3cret" not in str(root.inputs) + str(root.attributes)
    assert root.attributes["user_agent.original"] == "REDACTED"
    assert root.inputs["headers"] == {"user-agent": "REDACTED"}


def test_header_names_in_any_case_are_captured_and_redacted(hello_app: Any) -> None:
    # ASGI asks servers for lower-case names; one that does not must still be redacted.
    mw = TracingMiddleware(hello_app, config={"capture_headers": ["x-custom", "authorization"]})
    call(mw, headers=[(b"X-Custom", b"v"), (b"Authorization", b"Bearer s3cret"),
                      (bytearray(b"User-Agent"), b"ua")])
    root = only_trace().data.spans[0]
    assert root.inputs["headers"] == {"x-custom": "v", "authorization": "REDACTED"}
    assert root.attributes["user_agent.original"] == "ua"


def test_default_captures_only_listed_headers(hello_app: Any) -> None:
    call(TracingMiddleware(hello_app), headers=[(b"user-agent", b"ua"), (b"x-secret", b"v")])
    root = only_trace().data.spans[0]
    assert root.inputs["headers"] == {"user-agent": "ua"}
    assert "body" not in root.inputs


def test_body_captured_up_to_the_cap_and_app_gets_every_byte() -> None:
    received: list[bytes] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        more = True
        while more:
            message = await receive()
            received.append(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(received)})

    chunks = [b"0123456789", b"abcdefghij", b"ABCDEFGHIJ"]
    mw = TracingMiddleware(app, config={"routes": [{"path": "/**", "capture_body": 15}]})
    sent = call(mw, "POST", "/up", chunks)
    assert b"".join(received) == sent.body == b"".join(chunks)
    root = only_trace().data.spans[0]
    assert root.inputs["body"].startswith("0123456789abcde... [truncated: 30 bytes")
    assert root.attributes["http.request.body.size"] == 30
    assert root.outputs["body"].startswith("0123456789abcde...")


def test_json_and_binary_bodies() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": b"\xff\xfe\x00binary"})

    mw = TracingMiddleware(app, config={"capture_body": True})
    call(mw, "POST", "/", [b'{"a": [1, 2]}'], headers=[(b"content-type", b"application/json")])
    root = only_trace().data.spans[0]
    assert root.inputs["body"] == {"a": [1, 2]}
    assert root.outputs["body"] == "<9 bytes of binary data>"


def test_semantic_convention_attributes(hello_app: Any) -> None:
    call(TracingMiddleware(hello_app, config={"service_name": "svc"}), "GET", "/x",
         query=b"a=1", headers=[(b"host", b"example.com:8080"), (b"user-agent", b"ua")])
    attributes = only_trace().data.spans[0].attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/x"
    assert attributes["url.query"] == "a=1"
    assert attributes["url.scheme"] == "http"
    assert attributes["client.address"] == "127.0.0.1"
    assert attributes["http.response.status_code"] == 200
    assert attributes["network.protocol.version"] == "1.1"
    assert attributes["service.name"] == "svc"
    assert attributes["user_agent.original"] == "ua"
    assert attributes["server.address"] in ("testserver", "example.com")


# -- traceparent and the trace id header ----------------------------------------------------
def test_traceparent_continues_the_trace(hello_app: Any) -> None:
    sent = call(TracingMiddleware(hello_app),
                headers=[(b"traceparent", TRACEPARENT.encode())])
    trace = only_trace()
    assert trace.info.trace_id == "tr-0af7651916cd43dd8448eb211c80319c"
    assert sent.header(b"x-trace-id") == trace.info.trace_id.encode()
    root = trace.data.spans[0]
    assert root.attributes["routetrace.remote_parent_span_id"] == "b7ad6b7169203331"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                     id="unknown version"),
        pytest.param(b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                     id="uppercase hex"),
        pytest.param(b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
                     id="zero trace id"),
        pytest.param(b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                     id="zero parent id"),
        pytest.param(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", id="no flags"),
        pytest.param(b"00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
                     id="short trace id"),
        pytest.param("00-0af7651916cd43dd8448eb211c80319\u00e9-b7ad6b7169203331-01".encode(),
                     id="non-ascii"),
        pytest.param(b"\xff\xfe", id="not utf-8"),
    ],
)
def test_malformed_traceparent_starts_a_new_trace(hello_app: Any, value: bytes) -> None:
    sent = call(TracingMiddleware(hello_app), headers=[(b"traceparent", value)])
    assert sent.status == 200
    assert sent.body == b"hello"
    trace = only_trace()
    assert trace.info.trace_id != "tr-0af7651916cd43dd8448eb211c80319c"
    assert "routetrace.remote_parent_span_id" not in trace.data.spans[0].attributes


def test_trace_id_header_never_changes_the_apps_own_message(tracer: Tracer) -> None:
    headers = [(b"content-type", b"text/plain")]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    body = {"type": "http.response.body", "body": b"ok"}

    async def reusing_app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)  # the same dict and list every time
        await send(body)

    mw = TracingMiddleware(reusing_app)
    first, second = call(mw), call(mw)
    assert start == {"type": "http.response.start", "status": 200, "headers": headers}
    assert headers == [(b"content-type", b"text/plain")]
    ids = [sent.header(b"x-trace-id") for sent in (first, second)]
    assert ids[0] != ids[1]
    assert {trace.info.trace_id.encode() for trace in traces_of()} == set(ids)


def test_trace_id_header_name_and_off(hello_app: Any) -> None:
    sent = call(TracingMiddleware(hello_app, config={"trace_id_header": "X-Request-Trace"}))
    value = sent.header(b"x-request-trace")
    assert value is not None
    assert value.startswith(b"tr-")
    assert len(value) == 35
    traces_of()
    assert routetrace.get_trace(value.decode()) is not None
    sent = call(TracingMiddleware(hello_app, config={"trace_id_header": ""}))
    assert sent.headers == [(b"content-type", b"text/plain")]


def test_trace_id_header_set_by_the_app_is_kept() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-trace-id", b"mine")]})
        await send({"type": "http.response.body", "body": b""})

    assert call(TracingMiddleware(app)).headers == [(b"x-trace-id", b"mine")]


# -- sampling and turning it off ------------------------------------------------------------
def test_sampled_out_requests_are_untouched(hello_app: Any) -> None:
    mw = TracingMiddleware(hello_app, config={"routes": [{"path": "/**", "sample_rate": 0}]})
    sent = call(mw)
    assert sent.headers == [(b"content-type", b"text/plain")]
    assert traces_of() == []


def test_sample_rate_keeps_about_that_share(hello_app: Any, monkeypatch: Any) -> None:
    import random

    rng = random.Random(4)
    monkeypatch.setattr(random, "random", rng.random)
    mw = TracingMiddleware(hello_app, config={"routes": [{"path": "/**", "sample_rate": 0.25}]})
    for _ in range(200):
        call(mw)
    assert 30 <= len(traces_of()) <= 70


def test_tracing_disabled_by_environment_is_a_pure_pass_through(
    hello_app: Any, reset_tracer: Any
) -> None:
    reset_tracer(MLFLOW_TRACING_ENABLED="false")
    seen: list[Any] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append((receive, send))
        await hello_app(scope, receive, send)

    mw = TracingMiddleware(app)

    async def go() -> tuple[Any, Any, Any]:
        async def receive() -> dict:
            return {"type": "http.request"}

        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        await mw(make_scope(), receive, send)
        return receive, send, messages

    receive, send, messages = asyncio.run(go())
    assert seen == [(receive, send)]  # the app got the server's own callables
    assert messages[0]["headers"] == [(b"content-type", b"text/plain")]
    assert traces_of() == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("routetrace")]


def test_disable_at_runtime_is_checked_per_request(hello_app: Any) -> None:
    mw = TracingMiddleware(hello_app)
    routetrace.disable()
    try:
        assert call(mw).header(b"x-trace-id") is None
    finally:
        routetrace.enable()
    assert call(mw).header(b"x-trace-id") is not None
    assert len(traces_of()) == 1


# -- lifespan and websockets ----------------------------------------------------------------
def test_lifespan_shutdown_settles_the_export_before_completing(tracer: Tracer,
                                                               monkeypatch: Any) -> None:
    events: list[str] = []
    monkeypatch.setattr(tracer, "settle", lambda reason: events.append(reason) or True)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def go() -> None:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict:
            return inbox.pop(0)

        async def send(message: dict) -> None:
            events.append(message["type"])

        await TracingMiddleware(app)({"type": "lifespan", "asgi": {"version": "3.0"}},
                                     receive, send)

    asyncio.run(go())
    assert events == ["lifespan.startup.complete", "lifespan shutdown",
                      "lifespan.shutdown.complete"]


def test_websocket_session_is_one_trace() -> None:
    from starlette.testclient import TestClient

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in range(2):
            text = await websocket.receive_text()
            with routetrace.start_span("reply"):
                await websocket.send_text(text.upper())
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws/{room}", echo)])
    app.add_middleware(TracingMiddleware, config={"routes": [{"path": "/ws/**",
                                                               "experiment": "ws"}]})
    with TestClient(app) as tc, tc.websocket_connect("/ws/lobby") as ws:
        ws.send_text("a")
        assert ws.receive_text() == "A"
        ws.send_text("b")
        assert ws.receive_text() == "B"
    trace = only_trace("ws")
    assert trace.info.state == "OK"
    root = trace.data.spans[0]
    assert root.name == "WEBSOCKET /ws/{room}"
    assert [s.name for s in trace.data.spans[1:]] == ["reply", "reply"]
    assert root.attributes["websocket.close.code"] == 1000


# -- never break the app --------------------------------------------------------------------
def test_failing_deferred_builder_does_not_touch_the_response(hello_app: Any,
                                                             monkeypatch: Any) -> None:
    def broken(self: Exchange, span: Any) -> None:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "nope")

    # The exchange is the deferred capture, called when the worker builds the trace.
    monkeypatch.setattr(Exchange, "__call__", broken)
    sent = call(TracingMiddleware(hello_app))
    assert sent.body == b"hello"
    assert len(traces_of()) == 1  # exported without the request details


def test_errors_inside_routetrace_are_counted_not_raised(hello_app: Any, monkeypatch: Any
                                                         ) -> None:
    mw = TracingMiddleware(hello_app)

    def explode(path: str, method: str) -> None:
        raise RuntimeError("matcher bug")

    monkeypatch.setattr(mw, "table", type("T", (), {"match": staticmethod(explode),
                                                    "default_experiment": None})())
    before = guard.counts["route matching"]
    sent = call(mw)
    assert sent.body == b"hello"
    assert sent.headers == [(b"content-type", b"text/plain")]
    assert guard.counts["route matching"] == before + 1
    assert traces_of() == []


def test_weird_requests_are_traced_without_failing(hello_app: Any) -> None:
    mw = TracingMiddleware(hello_app, config={"capture_headers": ["*"], "capture_body": 64})
    sent = call(mw, "POST", "/caf\udcc3\udca9/\x00", [b"\xff\xfe\xfd"], query=b"\xff=\xfe",
                raw_path=b"/caf\xc3\xa9/%00",
                headers=[(b"x-bin", b"\xff\xfe"), (b"x-big", b"v" * 100_000)])
    assert sent.body == b"hello"
    root = only_trace().data.spans[0]
    assert root.inputs["headers"]["x-bin"] == "\xff\xfe"
    assert "body" not in root.inputs  # the app never read it: routetrace reads nothing itself
    assert root.inputs["path"] == "/caf\\udcc3\\udca9/\x00"
    assert root.attributes["url.path"] == "/caf\\udcc3\\udca9/\x00"
    assert root.attributes["url.query"] == "\xff=\xfe"


def test_json_response_of_a_real_app_is_identical_with_and_without(hello_app: Any) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path, "q": dict(request.query_params)})

    def make() -> Starlette:
        return Starlette(routes=[Route("/j/{x}", endpoint)])

    traced = make()
    traced.add_middleware(TracingMiddleware, config={"trace_id_header": ""})
    a = call(make(), "GET", "/j/1", query=b"a=1")
    b = call(traced, "GET", "/j/1", query=b"a=1")
    assert a.messages == b.messages


class _BrokenVar:
    def get(self) -> Any:
        raise RuntimeError("context bug")


@pytest.mark.parametrize("fast_path", [True, False])
def test_failure_after_the_span_started_leaves_nothing_open(
    hello_app: Any, monkeypatch: Any, tracer: Tracer, fast_path: bool
) -> None:
    def broken(span: Any) -> Any:
        raise RuntimeError("context bug")

    monkeypatch.setattr("opentelemetry.trace.set_span_in_context", broken)
    before = guard.counts["starting the request span"]
    middleware = TracingMiddleware(hello_app, config={"routes": [{"path": "/**",
                                                                  "experiment": "x"}]})
    middleware._otel_var = _BrokenVar() if fast_path else None
    sent = call(middleware)
    assert sent.body == b"hello"
    assert sent.header(b"x-trace-id") is None
    assert guard.counts["starting the request span"] == before + 1
    assert tracer.live == set()  # ended, not leaked until exit
    from routetrace.core.destination import get_context_destination

    assert get_context_destination() is None
