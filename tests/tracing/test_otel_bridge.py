"""OpenTelemetry interop: OTel spans join routetrace's trace; inject writes its ids."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry import propagate
from opentelemetry import trace as otel_trace

import routetrace
from tests.conftest import traces_of


@pytest.fixture
def echo_server():
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            body = b"pong"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_routetrace_is_the_global_tracer_provider():
    from routetrace.tracing.otel_bridge import RoutetraceTracerProvider

    assert isinstance(otel_trace.get_tracer_provider(), RoutetraceTracerProvider)


def test_otel_api_spans_become_children_and_inject_carries_the_trace_id():
    tracer = otel_trace.get_tracer("my.library")
    with routetrace.start_span("root") as root:
        with tracer.start_as_current_span("otel-child", attributes={"db.system": "sqlite"}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            with routetrace.start_span("grandchild"):
                pass
    (trace,) = traces_of()
    spans = {s.name: s for s in trace.data.spans}
    assert spans["otel-child"].parent_id == spans["root"].span_id
    assert spans["grandchild"].parent_id == spans["otel-child"].span_id
    assert spans["otel-child"].attributes["db.system"] == "sqlite"
    assert spans["otel-child"].attributes["otel.scope.name"] == "my.library"
    version, trace_hex, span_hex, flags = carrier["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert "tr-" + trace_hex == root.trace_id
    assert span_hex == spans["otel-child"].span_id


def test_otel_exception_marks_the_span_error():
    tracer = otel_trace.get_tracer("lib")
    with routetrace.start_span("root"):
        with pytest.raises(KeyError), tracer.start_as_current_span("fails"):
            raise KeyError("k")
    spans = {s.name: s for s in traces_of()[0].data.spans}
    assert spans["fails"].status.status_code == "ERROR"
    assert spans["fails"].events[0].attributes["exception.type"] == "KeyError"


def test_otel_spans_outside_a_trace_record_nothing():
    tracer = otel_trace.get_tracer("lib")
    with tracer.start_as_current_span("stray") as span:
        assert not span.is_recording()
    assert traces_of() == []


def test_real_httpx_instrumentation_lands_in_the_trace(echo_server):
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    url, seen = echo_server
    HTTPXClientInstrumentor().instrument()
    try:
        with routetrace.start_span("handler") as root:
            response = httpx.get(url + "/ping")
            assert response.text == "pong"
    finally:
        HTTPXClientInstrumentor().uninstrument()
    (trace,) = traces_of()
    spans = {s.name: s for s in trace.data.spans}
    (client_span,) = [s for s in trace.data.spans if s.name != "handler"]
    assert client_span.parent_id == spans["handler"].span_id
    assert client_span.attributes.get("otel.span_kind") == "CLIENT"
    status = client_span.attributes.get("http.response.status_code",
                                        client_span.attributes.get("http.status_code"))
    assert status == 200
    traceparent = {k.lower(): v for k, v in seen[0].items()}["traceparent"]
    assert traceparent.split("-")[1] == root.trace_id[3:]
    assert traceparent.split("-")[2] == client_span.span_id
