"""OpenTelemetry interop: OTel spans join routetrace's trace; inject writes its ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


def test_the_first_trace_makes_routetrace_the_provider_when_the_app_set_none():
    from routetrace.core.otel_bridge import RoutetraceTracerProvider

    with routetrace.start_span("first"):
        pass
    assert isinstance(otel_trace.get_tracer_provider(), RoutetraceTracerProvider)


def _run(script: str, tmp_path) -> dict:
    """Run ``script`` in a fresh interpreter (OpenTelemetry's provider is set once per
    process) in an empty directory; it prints one JSON line, the result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_"))}
    env["MLFLOW_TRACKING_URI"] = str(tmp_path / "mlruns")
    env["ROUTETRACE_SIGNAL_HANDLERS"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Overriding of current TracerProvider" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_routetrace_starts_nothing(tmp_path):
    result = _run("""
        import json, os, threading
        import routetrace
        from opentelemetry import trace
        from routetrace.core import tracer

        print(json.dumps({
            "tracer": tracer.peek_tracer() is not None,
            "provider": type(trace.get_tracer_provider()).__name__,
            "threads": threading.active_count(),
            "files": os.listdir("."),
        }))
    """, tmp_path)
    assert result == {"tracer": False, "provider": "ProxyTracerProvider", "threads": 1,
                      "files": []}
    assert not (tmp_path / "mlruns").exists()


_SDK = """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
"""


@pytest.mark.parametrize("order", [
    pytest.param("sdk, import", id="SDK provider set before importing routetrace"),
    pytest.param("import, sdk", id="SDK provider set after importing routetrace"),
    pytest.param("import, trace, sdk", id="SDK provider set after the first trace"),
])
def test_the_apps_sdk_provider_keeps_its_spans_and_they_nest_in_the_trace(order, tmp_path):
    steps = {
        "sdk": _SDK,
        "import": "import routetrace\n",
        "trace": "with routetrace.start_span('earlier'):\n    pass\n",
    }
    script = "".join(textwrap.dedent(steps[step]) for step in order.split(", ")) + """
import json
from opentelemetry import trace as otel_trace
assert otel_trace.get_tracer_provider() is provider

app_tracer = otel_trace.get_tracer("my.app")

@routetrace.trace
def helper():
    return 1

with routetrace.start_span("request") as root:
    with app_tracer.start_as_current_span("db.query", attributes={"db.system": "sqlite"}):
        helper()
routetrace.flush()
(stored,) = routetrace.search_traces(filter_string="trace.name = 'request'", return_type="list")
print(json.dumps({
    "exported": [[s.name, format(s.context.trace_id, "032x"),
                  format(s.parent.span_id, "016x") if s.parent else None]
                 for s in exporter.get_finished_spans()],
    "trace_id": root.trace_id,
    "spans": [[s.name, s.span_id, s.parent_id, s.attributes.get("db.system")]
              for s in stored.data.spans],
}))
"""
    result = _run(script, tmp_path)
    spans = {name: (span_id, parent, db) for name, span_id, parent, db in result["spans"]}
    assert set(spans) == {"request", "db.query", "helper"}
    assert spans["db.query"][1] == spans["request"][0]
    assert spans["db.query"][2] == "sqlite"
    assert spans["helper"][1] == spans["db.query"][0]
    # The app's exporter still gets its span, in routetrace's trace, under the request span.
    assert result["exported"] == [
        ["db.query", result["trace_id"][3:], spans["request"][0]],
    ]


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
