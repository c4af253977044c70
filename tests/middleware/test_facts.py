"""What the export worker builds from a request is what the store keeps and a read shows.

The corpus below goes through the real middleware (ASGI, WSGI, a WebSocket session), the
export worker and the local store; every trace read back must equal, field by field, the
snapshot in ``data/stored_corpus.json`` (ids, clocks and stack traces aside). The snapshot
was taken before the worker built the root span in one pass and the store kept inputs and
outputs as JSON values: neither change may alter a stored field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
from werkzeug.test import create_environ, run_wsgi_app

import routetrace
from routetrace.core.otel_bridge import current_request
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
from tests.conftest import traces_of
from tests.fixtures.asgi import read_body
from tests.middleware.conftest import call, only_trace

SNAPSHOT = Path(__file__).parent / "data" / "stored_corpus.json"

CONFIG = {
    "capture_headers": ["user-agent", "content-type", "authorization", "set-cookie"],
    "routes": [
        {"path": "/chat/{room}", "experiment": "chat", "capture_body": 4096,
         "tags": {"team": "agents"}},
        {"path": "/form", "experiment": "form", "capture_body": 4096},
        {"path": "/boom", "experiment": "boom"},
        {"path": "/ws/**", "experiment": "ws"},
        {"path": "/flask/**", "experiment": "wsgi", "capture_body": 64},
    ],
}


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await read_body(receive)
    if scope["path"] == "/boom":
        raise ValueError("the model is down")
    with routetrace.start_span("answer", span_type="LLM") as span:
        span.set_inputs({"prompt": "hi", "n": 2})
        span.set_outputs(["hello", None, 1.5])
        span.set_attribute("model", "tiny")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"set-cookie", b"session=s3cr3t")]})
    await send({"type": "http.response.body", "body": body or b'{"ok": true}'})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read()
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"down for maintenance, a long explanation past the cap " * 3]


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text.upper())
    await websocket.close()


def _run_corpus() -> None:
    asgi = TracingMiddleware(_asgi_app, config=CONFIG)
    call(asgi, "GET", "/hello", query=b"q=1&token=abc",
         headers=[(b"user-agent", b"probe/1"), (b"authorization", b"Bearer s3cr3t")])
    call(asgi, "POST", "/chat/7", chunks=(b'{"prompt": "hi", "api_key": "sk-12345"}',),
         headers=[(b"content-type", b"application/json")])
    call(asgi, "POST", "/form", chunks=(b"user=ann&password=hunter2",),
         headers=[(b"content-type", b"application/x-www-form-urlencoded")])
    with pytest.raises(ValueError):
        call(asgi, "GET", "/boom")
    wsgi = WSGITracingMiddleware(_wsgi_app, config=CONFIG)
    run_wsgi_app(wsgi, create_environ("/flask/status?x=1", method="POST", data=b"ping",
                                      headers={"User-Agent": "flask-probe"}))
    ws_app = Starlette(routes=[WebSocketRoute("/ws/{room}", _echo)])
    ws_app.add_middleware(TracingMiddleware, config=CONFIG)
    with TestClient(ws_app) as client, client.websocket_connect("/ws/lobby") as ws:
        ws.send_text("a")
        assert ws.receive_text() == "A"


def _normal(trace: routetrace.Trace) -> dict[str, Any]:
    """The trace as a dict, with what differs from run to run replaced by what it is."""
    data = trace.to_dict()
    info = data["info"]
    for key in ("trace_id", "experiment_id", "request_time", "execution_duration"):
        info[key] = type(info[key]).__name__
    ids: dict[str | None, str] = {None: "none"}
    for span in data["data"]["spans"]:
        ids.setdefault(span["span_id"], f"span {len(ids)}")
    for span in data["data"]["spans"]:
        span["trace_id"] = "trace"
        span["span_id"], span["parent_id"] = ids[span["span_id"]], ids[span["parent_id"]]
        span["start_time_ns"] = span["end_time_ns"] = "ns"
        attributes = span["attributes"]
        if "client.port" in attributes:
            attributes["client.port"] = "port"
        for event in span["events"]:
            event["timestamp"] = "ns"
            if "exception.stacktrace" in event["attributes"]:
                event["attributes"]["exception.stacktrace"] = "stack"
    return data


def _corpus_as_stored() -> list[dict[str, Any]]:
    _run_corpus()
    traces = [routetrace.get_trace(t.info.trace_id) for t in traces_of()]
    return sorted((_normal(t) for t in traces),  # type: ignore[arg-type]
                  key=lambda d: d["info"]["tags"]["mlflow.traceName"])


def test_a_corpus_of_requests_reads_back_as_the_snapshot_stored() -> None:
    assert _corpus_as_stored() == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_a_processor_sees_and_changes_the_root_span_the_worker_built() -> None:
    seen: list[dict[str, Any]] = []

    def processor(span: Any) -> None:
        if span.parent_id is None:
            seen.append({"name": span.name, "inputs": span.inputs, "outputs": span.outputs,
                         "route": span.get_attribute("http.route"),
                         "tags": dict(span.trace.tags or {})})
            span.set_attribute("client.address", "hidden")
            span.set_attribute("note", ("a", 1))
            span.set_outputs({**span.outputs, "reviewed": True})
            span.update_name("reviewed")

    routetrace.configure(span_processors=[processor])
    _run_corpus()
    chat = only_trace("chat")
    assert [s for s in seen if s["name"] == "POST /chat/{room}"] == [{
        "name": "POST /chat/{room}",
        "inputs": {"method": "POST", "path": "/chat/7",
                   "headers": {"content-type": "application/json"},
                   "body": {"prompt": "hi", "api_key": "REDACTED"}},
        "outputs": {"status_code": 200,
                    "headers": {"content-type": "application/json", "set-cookie": "REDACTED"},
                    "body": {"prompt": "hi", "api_key": "REDACTED"}},
        "route": "/chat/{room}", "tags": {"route": "/chat/{room}", "team": "agents"},
    }]
    root = chat.data.spans[0]
    assert root.name == chat.info.tags["mlflow.traceName"] == "reviewed"
    assert root.attributes["client.address"] == "hidden"
    assert root.attributes["note"] == ["a", 1]
    assert root.outputs["reviewed"] is True
    assert json.loads(chat.info.response_preview)["reviewed"] is True
    assert len(seen) == 6  # every trace of the corpus, the WSGI and WebSocket ones too


def test_the_worker_fills_the_root_span_with_secrets_replaced() -> None:
    exchanges: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        exchanges.append(current_request.get())
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain"), (b"set-cookie", b"s=1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = TracingMiddleware(app, config={
        "capture_headers": ["user-agent", "authorization", "set-cookie"],
        "routes": [{"path": "/chat/{room}", "experiment": "chat"}]})
    call(mw, "GET", "/chat/7", query=b"q=1&token=abc",
         headers=[(b"user-agent", b"probe/1"), (b"authorization", b"Bearer s3cr3t"),
                  (b"x-other", b"o")])
    root = only_trace("chat").data.spans[0]
    assert root.name == "GET /chat/{room}"
    assert root.inputs == {"method": "GET", "path": "/chat/7", "query": "q=1&token=REDACTED",
                           "headers": {"user-agent": "probe/1", "authorization": "REDACTED"}}
    assert root.outputs == {"status_code": 201, "headers": {"set-cookie": "REDACTED"}}
    assert root.attributes == {
        "http.request.method": "GET", "url.path": "/chat/7", "url.scheme": "http",
        "http.route": "/chat/{room}", "url.query": "q=1&token=REDACTED",
        "http.response.status_code": 201, "client.address": "127.0.0.1",
        "client.port": 50000, "server.address": "testserver", "user_agent.original": "probe/1",
        "network.protocol.version": "1.1", "routetrace.rule": "/chat/{room}",
    }
    assert len(exchanges) == 1


def test_both_sides_keep_headers_when_captured_and_bodies_only_where_the_rule_reads_them(
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"pong"})

    mw = TracingMiddleware(app, config={
        "capture_headers": ["content-type"],
        "routes": [{"path": "/read", "experiment": "read", "capture_body": 1024},
                   {"path": "/skip", "experiment": "skip"}]})
    call(mw, "POST", "/read", chunks=(b"ping",))
    call(mw, "POST", "/skip", chunks=(b"ping",))

    read = only_trace("read").data.spans[0]
    assert read.inputs == {"method": "POST", "path": "/read", "body": "ping"}
    assert read.outputs == {"status_code": 200, "headers": {"content-type": "text/plain"},
                            "body": "pong"}
    skip = only_trace("skip").data.spans[0]
    assert skip.inputs == {"method": "POST", "path": "/skip"}
    assert skip.outputs == {"status_code": 200, "headers": {"content-type": "text/plain"}}


def test_snapshot_covers_every_kind_of_request() -> None:
    names = [d["info"]["tags"]["mlflow.traceName"]
             for d in json.loads(SNAPSHOT.read_text(encoding="utf-8"))]
    assert names == sorted(["GET", "POST /chat/{room}", "POST /form", "GET /boom",
                            "POST /flask/**", "WEBSOCKET /ws/{room}"])
