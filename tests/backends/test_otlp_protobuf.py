"""The protobuf writer against opentelemetry-proto: the bytes written straight from the
worker's records parse into the very message a reference builds field by field with the
proto classes, from the read model of the same traces, in both attribute styles."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

import routetrace
from routetrace.backends.otlp_protobuf import encode_protobuf
from routetrace.core.build import TraceRecord, record_trace, to_trace
from routetrace.core.live_trace import LiveTrace
from routetrace.core.model import Trace
from routetrace.core.tracer import Tracer
from routetrace.middleware import TracingMiddleware
from tests.fixtures.asgi import read_body
from tests.middleware.conftest import call

trace_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2")

CONFIG = {
    "experiment": "web",
    "capture_body": True,
    "capture_headers": ["content-type", "user-agent"],
    "routes": [{"path": "/chat/{room}", "experiment": "chat", "span_type": "AGENT"}],
}
RESOURCE = {"service.name": "agents-api", "telemetry.sdk.name": "routetrace",
            "mlflow.experiment.id": "7", "mlflow.experiment.name": "chät"}


# -- the reference: opentelemetry-proto's classes, set field by field --------------------
def _set_any(pb: Any, value: Any, style: str) -> None:
    if value is None:
        pb.SetInParent()
    elif isinstance(value, bool):
        pb.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            pb.int_value = value
        else:
            pb.string_value = str(value)
    elif isinstance(value, float):
        pb.double_value = value
    elif isinstance(value, str):
        pb.string_value = value
    elif style == "json":
        pb.string_value = json.dumps(value, ensure_ascii=False, default=str)
    elif isinstance(value, Mapping):
        pb.kvlist_value.SetInParent()
        for k, v in value.items():
            kv = pb.kvlist_value.values.add()
            kv.key = str(k)
            _set_any(kv.value, v, style)
    elif isinstance(value, (list, tuple)):
        pb.array_value.SetInParent()
        for v in value:
            _set_any(pb.array_value.values.add(), v, style)
    else:
        pb.string_value = str(value)


def _add_attrs(repeated: Any, attrs: Mapping[str, Any], style: str) -> None:
    for key, value in attrs.items():
        kv = repeated.add()
        kv.key = key
        _set_any(kv.value, value, style)


def _reference(traces: list[Trace], resource: Mapping[str, Any], style: str) -> Any:
    """The request as routetrace sent it when it built message objects from ``Trace`` s."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _add_attrs(rs.resource.attributes, resource, "json")
    ss = rs.scope_spans.add()
    ss.scope.name = "routetrace"
    for trace in traces:
        info = trace.info
        for span in trace.data.spans:
            pb = ss.spans.add()
            pb.trace_id = bytes.fromhex(info.trace_id[3:])
            pb.span_id = bytes.fromhex(span.span_id)
            if span.parent_id:
                pb.parent_span_id = bytes.fromhex(span.parent_id)
            pb.name = span.name
            pb.kind = 1
            pb.start_time_unix_nano = span.start_time_ns
            pb.end_time_unix_nano = span.end_time_ns or span.start_time_ns
            attrs = dict(span.attributes)
            if style == "json":
                attrs["mlflow.spanType"] = json.dumps(span.span_type, ensure_ascii=False)
                for key, value in (("mlflow.spanInputs", span.inputs),
                                   ("mlflow.spanOutputs", span.outputs)):
                    if value is not None:
                        attrs[key] = json.dumps(value, ensure_ascii=False, default=str)
                attrs["mlflow.traceRequestId"] = json.dumps(info.trace_id)
                if span.parent_id is None:
                    for key, value in info.tags.items():
                        attrs["mlflow.traceTag." + key] = str(value)
            else:
                attrs["mlflow.spanType"] = span.span_type
                if span.inputs is not None:
                    attrs["mlflow.spanInputs"] = span.inputs
                if span.outputs is not None:
                    attrs["mlflow.spanOutputs"] = span.outputs
                attrs["mlflow.traceRequestId"] = info.trace_id
            _add_attrs(pb.attributes, attrs, style)
            code = {"UNSET": 0, "OK": 1, "ERROR": 2}[str(span.status.status_code)]
            pb.status.code = 1 if code == 0 and style == "native" else code
            if span.status.description:
                pb.status.message = span.status.description
            for event in span.events:
                ev = pb.events.add()
                ev.time_unix_nano = event.timestamp
                ev.name = event.name
                _add_attrs(ev.attributes, event.attributes, style)
    return request


# -- the traces ---------------------------------------------------------------------------
async def _app(scope: dict, receive: Any, send: Any) -> None:
    body = await read_body(receive)
    with routetrace.start_span("llm", span_type="LLM") as span:
        span.set_inputs({"prompt": body.decode("utf-8", "replace"), "n": [1, 2.5, None]})
        span.set_attributes({
            "model": "m", "temperature": 0.5, "zero": 0, "negative": -7, "big": 2**70,
            "flag": True, "off": False, "none": None, "empty": "", "nested": {"k": [1, {}]},
            "list": ["a", 1], "empty_list": [], "üñï": "ŝtring ✓", "long": "x" * 300,
        })
        span.add_event(routetrace.SpanEvent("retry", attributes={"n": 1, "why": "ça"}))
        with routetrace.start_span("tool", span_type="TOOL") as tool:
            tool.set_outputs("y" * 20_000)
        span.set_outputs({"answer": "日本語"})
    routetrace.update_current_trace(tags={"user": "ü1"}, metadata={"session": "s1"})
    status = 500 if b"fail" in body else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})
    if status == 500:
        raise RuntimeError("the app failed after answering ✗")


@pytest.fixture
def records(tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> list[TraceRecord]:
    """Middleware GET and POST traces and plain ones, built as the export worker builds them."""
    held: list[LiveTrace] = []
    monkeypatch.setattr(tracer.exporter.logger, "put", held.append)
    app = TracingMiddleware(_app, config=CONFIG)
    json_headers = [(b"content-type", b"application/json"), (b"user-agent", "tëst".encode())]
    call(app, "POST", "/chat/7", chunks=(b'{"q": ', b'"h\xc3\xaf"}'), headers=[
        *json_headers,
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
    with pytest.raises(RuntimeError):
        call(app, "POST", "/chat/8", chunks=(b"fail",), headers=json_headers)
    call(app, "GET", "/caf\u00e9", query=b"a=1")

    @routetrace.trace(span_type="CHAIN", attributes={"mlflow.spanType": "mine", "k": 1})
    def plain(x: int) -> int:
        with routetrace.start_span("inner") as span:
            span.set_status("ERROR")
        routetrace.update_current_trace(tags={"t": "v"})
        return x * 2

    plain(1)
    assert len(held) == 4
    built = [record_trace(live, live.processors) for live in held]
    # The root of the remote-parent trace, as the other half's would read, and a root with
    # an attribute named like a trace tag (the tags win, in the attribute's place).
    root = built[3].spans[0]
    built[3].spans[0] = root._replace(
        attributes={"mlflow.traceTag.t": "mine", **root.attributes}, status_description="")
    return built


def _parsed(data: bytes) -> Any:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


@pytest.mark.parametrize("style", ["json", "native"])
@pytest.mark.parametrize("resource", [RESOURCE, {}], ids=["resource", "no resource"])
def test_the_bytes_parse_into_the_message_the_proto_classes_build(
        records: list[TraceRecord], style: str, resource: dict[str, Any]) -> None:
    from google.protobuf.json_format import MessageToDict

    data = encode_protobuf(records, resource=resource, style=style)  # type: ignore[arg-type]
    expected = _reference([to_trace(r) for r in records], resource, style)
    assert MessageToDict(_parsed(data)) == MessageToDict(expected)
    assert _parsed(data) == expected
    # Field for field in field-number order, as opentelemetry-proto serialises them.
    assert data == expected.SerializeToString()


def test_the_traces_cover_what_the_encoding_must_get_right(records: list[TraceRecord]) -> None:
    spans = [s for r in records for s in r.spans]
    assert any(s.events for s in spans)
    assert any(s.status_code == "ERROR" and s.status_description for s in spans)
    assert any("routetrace.remote_parent_span_id" in s.attributes for s in spans)
    assert any(len(s.outputs_json) > 16_384 for s in spans)  # a three-byte length
    assert any(s.inputs_json == "null" for s in spans)
    assert any(not json.dumps(s.attributes, ensure_ascii=False).isascii() for s in spans)
    assert any(not s.outputs_json.isascii() for s in spans)
    values = [v for s in spans for v in s.attributes.values()]
    for kind in (bool, int, float, str, dict, list, type(None)):
        assert any(type(v) is kind for v in values), kind


def test_an_empty_batch_is_a_request_with_no_spans() -> None:
    expected = _reference([], RESOURCE, "json")
    assert _parsed(encode_protobuf([], resource=RESOURCE)) == expected


def test_a_trace_replayed_from_the_spool_is_sent_as_it_was_first(
        records: list[TraceRecord], tmp_path: Any) -> None:
    from routetrace.backends.base import records_of
    from routetrace.export import spool

    path = spool.spool_batch(tmp_path, "otlp+http://c:4318", routetrace.Experiment(name="e"),
                             [to_trace(r) for r in records])
    _, traces = spool.read_spool_file(path)
    for style in ("json", "native"):
        assert (encode_protobuf(records_of(traces), resource=RESOURCE, style=style)  # type: ignore[arg-type]
                == encode_protobuf(records, resource=RESOURCE, style=style))  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["json", "native"])
def test_the_otlp_json_of_the_same_records_reads_as_the_same_message(
        records: list[TraceRecord], style: str) -> None:
    import base64

    from google.protobuf.json_format import ParseDict

    from routetrace.backends.otlp_encoding import encode_json

    doc = encode_json(records, resource=RESOURCE, style=style)  # type: ignore[arg-type]
    for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):  # hex in OTLP-JSON, base64 in proto's
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    parsed = ParseDict(doc, trace_service_pb2.ExportTraceServiceRequest())
    assert parsed == _reference([to_trace(r) for r in records], RESOURCE, style)


@pytest.mark.parametrize("style", ["json", "native"])
def test_equal_values_of_other_types_are_not_mixed_up(records: list[TraceRecord],
                                                      style: str) -> None:
    # Encoded one after the other under one key, as repeated HTTP attributes are.
    template = records[0]
    for value in (1, True, 1.0, 0, False, 0.0, -0.0, "1", "", None, 2**63, -(2**63)):
        span = template.spans[0]._replace(attributes={"k": value})
        record = template._replace(spans=[span])
        data = encode_protobuf([record], style=style)  # type: ignore[arg-type]
        assert data == _reference([to_trace(record)], {}, style).SerializeToString(), value
