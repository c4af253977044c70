from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, request, stream_with_context
from opentelemetry import trace as otel_trace
from werkzeug.test import create_environ, run_wsgi_app

import routetrace
from routetrace.middleware import WSGITracingMiddleware
from tests.conftest import traces_of
from tests.fixtures.servers import wait_until
from tests.middleware.conftest import only_trace

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def flask_app(config: Any = None) -> Flask:
    app = Flask("t")

    @app.post("/math/<op>")
    def math(op: str) -> Any:
        body = request.get_json()
        with routetrace.start_span("compute", span_type="TOOL") as span:
            span.set_inputs(body)
        return jsonify(op=op, result=body["a"] + body["b"])

    @app.get("/chat/<int:room>")
    def chat(room: int) -> Response:
        def stream() -> Iterator[str]:
            for i in range(3):
                with routetrace.start_span(f"token {i}"):
                    yield f"data: {i}\n\n"

        return Response(stream_with_context(stream()), mimetype="text/event-stream")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "down", 503

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    app.wsgi_app = WSGITracingMiddleware(app.wsgi_app, config=config or {  # type: ignore[method-assign]
        "experiment": "web", "exclude": ["/healthz"], "capture_body": True,
        "routes": [{"path": "/math/{op}", "methods": ["POST"], "experiment": "math-agent"},
                   {"path": "/chat/**", "experiment": "chat-agent"}],
    })
    return app


def test_flask_routes_and_template_names() -> None:
    client = flask_app().test_client()
    response = client.post("/math/add", json={"a": 2, "b": 3})
    assert response.json == {"op": "add", "result": 5}
    assert client.get("/healthz").data == b"ok"
    trace = only_trace("math-agent")
    root = trace.data.spans[0]
    assert root.name == "POST /math/<op>"
    assert root.attributes["http.route"] == "/math/<op>"
    assert root.inputs["body"] == {"a": 2, "b": 3}
    assert root.outputs["body"] == {"op": "add", "result": 5}
    assert [s.name for s in trace.data.spans] == ["POST /math/<op>", "compute"]
    assert trace.data.spans[1].parent_id == root.span_id
    assert response.headers["x-trace-id"] == trace.info.trace_id
    assert len(traces_of()) == 1  # /healthz excluded


def test_streamed_response_spans_land_in_the_trace_and_end_it_last() -> None:
    client = flask_app().test_client()
    response = client.get("/chat/7")
    assert response.data == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    trace = only_trace("chat-agent")
    root = trace.data.spans[0]
    assert root.name == "GET /chat/<int:room>"
    tokens = trace.data.spans[1:]
    assert [s.name for s in tokens] == ["token 0", "token 1", "token 2"]
    assert all(s.parent_id == root.span_id for s in tokens)
    assert root.end_time_ns >= tokens[-1].end_time_ns
    assert root.outputs["body"] == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_exception_propagates_and_is_error() -> None:
    app = flask_app()
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="boom"):
        app.test_client().get("/boom")
    trace = only_trace("web")
    assert trace.info.state == "ERROR"
    assert [e.name for e in trace.data.spans[0].events] == ["exception"]


def test_flask_500_page_and_503_are_error() -> None:
    client = flask_app().test_client()
    with client.get("/boom") as response:  # a server always reads and closes the body
        assert response.status_code == 500
    with client.get("/fail") as response:
        assert response.data == b"down"
        assert response.status_code == 503
    traces = traces_of("web")
    assert sorted(t.info.state for t in traces) == ["ERROR", "ERROR"]


def test_a_flask_500_page_records_the_exception_flask_caught() -> None:
    client = flask_app().test_client()  # not testing mode: Flask answers its 500 page
    with client.get("/boom") as response:
        assert response.status_code == 500
    trace = only_trace("web")
    root = trace.data.spans[0]
    assert trace.info.state == "ERROR"
    assert root.status.status_code == "ERROR"
    (event,) = root.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "boom"
    assert "raise RuntimeError" in event.attributes["exception.stacktrace"]


def test_a_response_released_unread_ends_the_span_with_the_apps_status() -> None:
    # The most common Flask test reads only the status: the test client never closes the
    # response, and the span ends when the response object is released.
    client = flask_app().test_client()
    assert client.get("/chat/7").status_code == 200
    assert client.get("/fail").status_code == 503
    assert client.post("/math/add", json={"a": 1, "b": 2}).status_code == 200
    # The unread stream was suspended inside its "token 0" span: closing it must not leave
    # that span's parent current here.
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN
    traces = {t.data.spans[0].name: t for t in traces_of()}
    assert sorted(traces) == ["GET /chat/<int:room>", "GET /fail", "POST /math/<op>"]
    assert traces["GET /chat/<int:room>"].info.state == "OK"
    assert traces["POST /math/<op>"].info.state == "OK"
    assert traces["GET /fail"].info.state == "ERROR"
    for trace in traces.values():
        assert "routetrace.aborted" not in trace.info.trace_metadata
    assert traces["GET /fail"].data.spans[0].status.description == "HTTP 503"
    assert routetrace.get_export_stats()["live_traces"] == 0


def _shape(trace: routetrace.Trace) -> tuple:
    root = trace.data.spans[0]
    return (root.name, trace.info.experiment_name, trace.info.state, root.status.status_code,
            root.attributes["http.response.status_code"],
            [(e.name, e.attributes.get("exception.type"), e.attributes.get("exception.message"))
             for e in root.events],
            [s.name for s in trace.data.spans])


def test_flasks_test_client_gives_the_same_traces_as_a_real_server() -> None:
    from werkzeug.serving import make_server

    # Not a streamed body: the parts of it a test never reads never run.
    requests = [("POST", "/math/add", {"a": 1, "b": 2}), ("GET", "/fail", None),
                ("GET", "/boom", None)]
    app = flask_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            for method, path, body in requests:
                http.request(method, path, json=body)
        wait_until(lambda: len(traces_of()) == len(requests), 10, what="the server's traces")
    finally:
        server.shutdown()
        server.server_close()
    served = sorted(_shape(t) for t in traces_of())
    routetrace.delete_traces(experiment="web", max_timestamp_millis=2**62)
    for experiment in ("math-agent", "chat-agent"):
        routetrace.delete_traces(experiment=experiment, max_timestamp_millis=2**62)
    assert traces_of() == []

    app = flask_app()
    # Flask logs the exception it caught, and pytest's log capture would keep the record,
    # its traceback, the frames and the unread /boom response in them until the test ends.
    app.logger.disabled = True
    client = app.test_client()
    for method, path, body in requests:
        assert client.open(path, method=method, json=body).status_code in (200, 500, 503)
    # Flask keeps that exception in a reference cycle with its frames: the /boom response
    # is released at the next garbage collection.
    gc.collect()
    assert sorted(_shape(t) for t in traces_of()) == served


def test_traceparent_and_raw_wsgi_close() -> None:
    closed: list[float] = []
    started = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            started.set()
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(time.time_ns())

    def app(environ: dict, start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    mw = WSGITracingMiddleware(app)
    environ = create_environ("/x", headers={"traceparent": TRACEPARENT})
    body, _status, headers = run_wsgi_app(mw, environ)
    assert b"".join(body) == b"ab"
    body.close()
    assert closed
    trace = only_trace()
    assert trace.info.trace_id == "tr-0af7651916cd43dd8448eb211c80319c"
    assert headers["x-trace-id"] == trace.info.trace_id
    assert trace.data.spans[0].name == "GET"


def test_a_queued_trace_does_not_keep_the_servers_start_response_alive(
        tracer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # As for ASGI: the trace waits for the export worker with its exchange, and the server's
    # start_response (gunicorn: a bound method of the request's response) must not wait too.
    held: list[Any] = []
    monkeypatch.setattr(tracer.exporter.logger, "put", held.append)

    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    class Server:
        def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
            self.status = status
            return lambda data: None

    server = Server()
    body = WSGITracingMiddleware(app)(create_environ("/x"), server.start_response)
    assert b"".join(body) == b"ok"
    body.close()
    assert server.status == "200 OK"
    alive = weakref.ref(server)
    del server, body
    gc.collect()
    assert len(held) == 1 and held[0].root._deferred is not None  # the trace still waits
    assert alive() is None


def test_close_without_iterating_ends_the_span() -> None:
    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    mw = WSGITracingMiddleware(app, config={"trace_id_header": ""})
    result = mw(create_environ("/"), lambda status, headers, exc_info=None: None)
    result.close()  # type: ignore[attr-defined]
    root = only_trace().data.spans[0]
    assert root.outputs == {"status_code": 204}


def test_body_tee_gives_the_app_every_byte() -> None:
    def app(environ: dict, start_response: Any) -> list[bytes]:
        stream = environ["wsgi.input"]
        data = stream.readline() + stream.read(3) + stream.read()
        start_response("200 OK", [])
        return [data]

    payload = b"first line\n" + b"x" * 100
    mw = WSGITracingMiddleware(app, config={"capture_body": 16})
    body, _, _ = run_wsgi_app(mw, create_environ("/", method="POST", data=payload))
    assert b"".join(body) == payload
    root = only_trace().data.spans[0]
    assert root.inputs["body"].startswith("first line\nxxxxx... [truncated: 111 bytes")


def test_disabled_is_a_pass_through(reset_tracer: Any) -> None:
    reset_tracer(MLFLOW_TRACING_ENABLED="false")
    calls: list[Any] = []

    def app(environ: dict, start_response: Any) -> list[bytes]:
        calls.append(start_response)
        start_response("200 OK", [])
        return [b"x"]

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        return None

    result = WSGITracingMiddleware(app)(create_environ("/"), start_response)
    assert result == [b"x"]
    assert calls == [start_response]
    assert traces_of() == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("routetrace")]


def test_non_utf8_path_is_matched_and_stored() -> None:
    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode("latin-1")]

    mw = WSGITracingMiddleware(app, config={"routes": [{"path": "/caf\u00e9/**",
                                                        "experiment": "cafe"}]})
    environ = create_environ("/")
    environ["PATH_INFO"] = "/caf\u00c3\u00a9/x"  # "/café/x" as a WSGI (latin-1) string
    body, _, _ = run_wsgi_app(mw, environ)
    assert b"".join(body) == "/café/x".encode()
    assert only_trace("cafe").data.spans[0].inputs["path"] == "/café/x"


def test_failure_after_the_span_started_leaves_nothing_open(monkeypatch: Any) -> None:
    from routetrace.core.tracer import get_tracer
    from routetrace.middleware import guard

    def broken(span: Any) -> Any:
        raise RuntimeError("context bug")

    monkeypatch.setattr("opentelemetry.trace.set_span_in_context", broken)

    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"fine"]

    before = guard.counts["starting the request span"]
    body, _, headers = run_wsgi_app(WSGITracingMiddleware(app), create_environ("/"))
    assert b"".join(body) == b"fine"
    assert "x-trace-id" not in headers
    assert guard.counts["starting the request span"] == before + 1
    assert get_tracer().live == set()
