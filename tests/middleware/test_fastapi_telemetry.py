"""FastAPI's own telemetry layer (``fastapi/telemetry``) and routetrace, both ways of adding
the middleware: one trace per request, the handler's spans under the root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import routetrace
from routetrace.core import otel_bridge
from routetrace.middleware import TracingMiddleware
from tests.conftest import traces_of


def _app() -> FastAPI:
    app = FastAPI()

    @routetrace.trace
    def double(x: int) -> int:
        return x * 2

    @app.get("/items/{i}")
    def item(i: int) -> dict[str, object]:
        routetrace.update_current_trace(tags={"item": str(i)})
        with routetrace.start_span("load"):
            return {"v": double(i), "trace": routetrace.get_active_trace_id()}

    return app


def _serve(how: str, config: dict) -> TestClient:
    app = _app()
    if how == "add_middleware":
        app.add_middleware(TracingMiddleware, config=config)
        return TestClient(app)
    return TestClient(TracingMiddleware(app, config=config))


def _shape(trace: routetrace.Trace) -> list[tuple[str, str | None]]:
    """(name, parent's name) of every span, in start order."""
    names = {s.span_id: s.name for s in trace.data.spans}
    spans = sorted(trace.data.spans, key=lambda s: s.start_time_ns)
    return [(s.name, names.get(s.parent_id) if s.parent_id else None) for s in spans]


@pytest.fixture(autouse=True)
def routetrace_serves_opentelemetry() -> None:
    # FastAPI's telemetry runs only once a provider is set; routetrace's bridge is one.
    assert otel_bridge.install()


@pytest.mark.parametrize("how", ["add_middleware", "wrapping the app"])
def test_one_request_is_one_trace_with_the_handlers_spans_under_the_root(how: str) -> None:
    with _serve(how, {}) as client:
        answer = client.get("/items/3").json()
    (trace,) = traces_of()
    assert _shape(trace) == [
        ("GET /items/{i}", None), ("load", "GET /items/{i}"), ("double", "load"),
    ]
    assert answer == {"v": 6, "trace": trace.info.trace_id}
    assert trace.info.tags["item"] == "3"


@pytest.mark.parametrize("how", ["add_middleware", "wrapping the app"])
def test_framework_spans_true_keeps_fastapis_own_spans_in_the_trace(how: str) -> None:
    with _serve(how, {"framework_spans": True}) as client:
        assert client.get("/items/3").json()["v"] == 6
    (trace,) = traces_of()
    shape = _shape(trace)
    names = [name for name, _ in shape]
    assert names[0] == "GET /items/{i}" and shape[0][1] is None
    assert {"fastapi.dependencies", "fastapi.endpoint", "fastapi.serialization"} <= set(names)
    assert ("load", "fastapi.endpoint") in shape
    assert ("double", "load") in shape


@pytest.mark.parametrize("how", ["add_middleware", "wrapping the app"])
def test_with_the_apps_sdk_provider_its_spans_reach_its_exporter_in_one_trace_and_nest_in_ours(
    how: str, tmp_path: Path
) -> None:
    script = f"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

import routetrace
from fastapi import FastAPI
from fastapi.testclient import TestClient
from routetrace.middleware import TracingMiddleware

app = FastAPI()
app_tracer = trace.get_tracer("my.app")

@app.get("/items/{{i}}")
def item(i: int):
    with app_tracer.start_as_current_span("db.query"):
        with routetrace.start_span("load"):
            return {{"v": i}}

if {how == "add_middleware"}:
    app.add_middleware(TracingMiddleware, config={{}})
    served = app
else:
    served = TracingMiddleware(app, config={{}})
with TestClient(served) as client:
    assert client.get("/items/3").json() == {{"v": 3}}
routetrace.flush()
traces = routetrace.search_traces(return_type="list")
print(json.dumps({{
    "exported": sorted(s.name for s in exporter.get_finished_spans()),
    "exported_trace_ids": sorted({{format(s.context.trace_id, "032x")
                                  for s in exporter.get_finished_spans()}}),
    "trace_ids": [t.info.trace_id for t in traces],
    "traces": [[[s.name, s.span_id, s.parent_id] for s in t.data.spans] for t in traces],
}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_"))}
    env["MLFLOW_TRACKING_URI"] = str(tmp_path / "mlruns")
    env["ROUTETRACE_SIGNAL_HANDLERS"] = "false"
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # The app's exporter gets FastAPI's spans and its own, as without routetrace.
    assert "db.query" in result["exported"]
    assert "fastapi.endpoint" in result["exported"]
    # ... in one trace, not split by routetrace's root span in between.
    (exported_trace_id,) = result["exported_trace_ids"]
    if how == "add_middleware":  # routetrace runs inside FastAPI's span: it continues its trace
        assert result["trace_ids"] == ["tr-" + exported_trace_id]
    (spans,) = result["traces"]
    ids = {span_id: name for name, span_id, _ in spans}
    shape = sorted((name, ids.get(parent)) for name, _, parent in spans)
    assert shape == [("GET /items/{i}", None), ("db.query", "GET /items/{i}"),
                     ("load", "db.query")]
