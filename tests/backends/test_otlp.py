"""The OTLP collector backend against a tiny real OTLP/HTTP receiver on loopback, and the
OTLP encodings (protobuf and OTLP-JSON)."""

from __future__ import annotations

import base64
import http.server
import json
from collections.abc import Iterator
from typing import Any

import pytest

import routetrace
from routetrace import SpanType
from routetrace.backends import backend_for_uri
from routetrace.backends import otlp_encoding as enc
from routetrace.backends.otlp import OtlpBackend, endpoint_from_uri
from routetrace.backends.otlp_protobuf import encode_protobuf
from routetrace.core.build import TraceRecord, record_of
from tests.fixtures.servers import loopback_http_server

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[dict[str, str], Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).requests.append(({k.lower(): v for k, v in self.headers.items()}, request))
        self.send_response(type(self).status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Recv", (_Receiver,), {"requests": [], "status": 200})
    with loopback_http_server(handler) as address:
        yield address, handler


def _attrs(kvs: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    from routetrace.backends.mlflow_server import MlflowServerBackend  # noqa: F401

    return {kv.key: enc.decode_any_value_json(MessageToDict(kv.value)) for kv in kvs}


def _produce() -> None:
    @routetrace.trace(span_type=SpanType.CHAIN)
    def handler(x: int) -> dict[str, int]:
        with routetrace.start_span("tool", span_type=SpanType.TOOL) as span:
            span.set_inputs({"x": x})
            span.set_outputs(x * 2)
        routetrace.update_current_trace(tags={"team": "a"})
        return {"y": x * 2}

    handler(21)


def test_collector_receives_standard_otlp(receiver, reset_tracer, tmp_path) -> None:
    address, handler = receiver
    reset_tracer(MLFLOW_TRACKING_URI=f"otlp+http://{address}",
                 OTEL_EXPORTER_OTLP_TRACES_HEADERS="x-api-key=k%3D1,x-tenant=t",
                 OTEL_SERVICE_NAME="agents-api",
                 ROUTETRACE_SPOOL_DIR=str(tmp_path / "spool"))
    routetrace.set_experiment("math-agent")
    _produce()
    assert routetrace.flush(timeout=30)
    ((headers, request),) = handler.requests
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-api-key"] == "k=1"
    assert headers["x-tenant"] == "t"
    (rs,) = request.resource_spans
    resource = _attrs(rs.resource.attributes)
    assert resource["service.name"] == "agents-api"
    assert resource["mlflow.experiment.name"] == "math-agent"
    spans = {s.name: s for s in rs.scope_spans[0].spans}
    root, tool = spans["handler"], spans["tool"]
    assert tool.parent_span_id == root.span_id
    assert root.parent_span_id == b""
    assert len(root.trace_id) == 16
    assert len(root.span_id) == 8
    root_attrs = _attrs(root.attributes)
    assert json.loads(root_attrs["mlflow.spanType"]) == "CHAIN"
    assert json.loads(root_attrs["mlflow.spanInputs"]) == {"x": 21}
    assert json.loads(root_attrs["mlflow.spanOutputs"]) == {"y": 42}
    assert root_attrs["mlflow.traceTag.team"] == "a"
    assert root_attrs["mlflow.traceTag.mlflow.traceName"] == "handler"
    tool_attrs = _attrs(tool.attributes)
    assert json.loads(tool_attrs["mlflow.spanOutputs"]) == 42
    assert not any(k.startswith("mlflow.traceTag.") for k in tool_attrs)


def test_collector_errors(receiver, tmp_path) -> None:
    from routetrace.backends.base import BackendError
    from routetrace.core.settings import load_settings

    address, handler = receiver
    backend = OtlpBackend.from_uri(f"otlp+http://{address}", load_settings({}))
    info = backend.resolve_experiment(routetrace.Experiment(name="e"))
    handler.status = 503
    trace = _sample_trace()
    with pytest.raises(BackendError) as err:
        backend.write_traces(info, [trace])
    assert err.value.retryable
    handler.status = 401
    with pytest.raises(BackendError, match="OTEL_EXPORTER_OTLP_TRACES_HEADERS") as err:
        backend.write_traces(info, [trace])
    assert not err.value.retryable
    backend.close()


def test_otel_traces_endpoint_used_when_no_tracking_uri(receiver, reset_tracer, tmp_path,
                                                        monkeypatch) -> None:
    address, handler = receiver
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    reset_tracer(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://{address}/v1/traces",
                 ROUTETRACE_SPOOL_DIR=str(tmp_path / "spool"))
    assert isinstance(routetrace._get_tracer().backend, OtlpBackend)
    _produce()
    assert routetrace.flush(timeout=30)
    assert len(handler.requests) == 1


@pytest.mark.parametrize(
    ("uri", "endpoint"),
    [
        pytest.param("otlp+http://c:4318", "http://c:4318/v1/traces", id="default path"),
        pytest.param("otlp+https://c:4318/", "https://c:4318/v1/traces", id="trailing slash"),
        pytest.param("otlp+http://c/custom/v1/traces", "http://c/custom/v1/traces",
                     id="path kept"),
        pytest.param("otlp://c:4318", "http://c:4318/v1/traces", id="bare otlp"),
    ],
)
def test_endpoint_from_uri(uri: str, endpoint: str) -> None:
    assert endpoint_from_uri(uri) == endpoint


def test_backend_for_uri_maps_otlp(tmp_path) -> None:
    from routetrace.core.settings import load_settings

    assert isinstance(backend_for_uri("otlp+http://127.0.0.1:1", load_settings({})), OtlpBackend)


def _sample_record() -> TraceRecord:
    return record_of(_sample_trace())


def _sample_trace() -> routetrace.Trace:
    from routetrace.core.model import Span, SpanEvent, SpanStatus, Trace, TraceData, TraceInfo

    tid = "tr-" + "ab" * 16
    root = Span(tid, "00000000000000a1", None, "root", "AGENT", 10**18, 10**18 + 5000,
                SpanStatus("ERROR", "bad"), {"q": "hi"}, None, {"n": 2**40, "f": 1.5},
                [SpanEvent("exception", 10**18 + 1, {"exception.message": "x"})])
    child = Span(tid, "00000000000000b2", "00000000000000a1", "child", "TOOL", 10**18 + 1,
                 10**18 + 2, SpanStatus("UNSET"), [1, 2], {"k": None})
    info = TraceInfo(tid, "1", 10**12, 0, "ERROR", tags={"mlflow.traceName": "root", "t": "v"})
    return Trace(info, TraceData([root, child]))


def test_otlp_json_follows_the_spec() -> None:
    doc = enc.encode_json([_sample_record()], resource={"service.name": "s"})
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "ab" * 16  # hex, not base64
    assert span["spanId"] == "00000000000000a1"
    assert span["startTimeUnixNano"] == str(10**18)  # int64 as a string
    assert span["status"] == {"code": 2, "message": "bad"}
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["n"] == {"intValue": str(2**40)}
    assert attrs["f"] == {"doubleValue": 1.5}
    assert attrs["mlflow.spanInputs"] == {"stringValue": '{"q": "hi"}'}
    assert span["events"][0]["timeUnixNano"] == str(10**18 + 1)
    child = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert child["parentSpanId"] == "00000000000000a1"


def test_protobuf_and_json_encodings_agree() -> None:
    """OTLP-JSON parsed the way a receiver does (hex ids → bytes) equals the protobuf."""
    from google.protobuf.json_format import ParseDict

    for style in ("json", "native"):
        doc = enc.encode_json([_sample_record()], resource={"service.name": "s"}, style=style)
        for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        from_json = ParseDict(doc, trace_service_pb2.ExportTraceServiceRequest())
        from_pb = trace_service_pb2.ExportTraceServiceRequest()
        from_pb.ParseFromString(
            encode_protobuf([_sample_record()], resource={"service.name": "s"}, style=style))
        assert from_json == from_pb, style


def test_native_style_sends_typed_values_and_ok_status() -> None:
    doc = enc.encode_json([_sample_record()], style="native")
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    root_attrs = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert root_attrs["mlflow.spanInputs"] == {
        "kvlistValue": {"values": [{"key": "q", "value": {"stringValue": "hi"}}]}}
    assert root_attrs["mlflow.spanType"] == {"stringValue": "AGENT"}
    assert not any(k.startswith("mlflow.traceTag.") for k in root_attrs)
    assert spans[1]["status"] == {"code": 1}  # UNSET on a finished span reads as OK in MLflow
