"""routetrace traces as OTLP ``ExportTraceServiceRequest``: protobuf bytes or OTLP-JSON.

Two attribute styles, because the two kinds of receivers read attributes differently:

``"native"`` (the MLflow tracking server): every attribute value is sent as its typed
``AnyValue`` (a dict becomes a ``kvlistValue``, a list an ``arrayValue``), exactly as MLflow's
own REST store sends spans (``mlflow.entities.Span.to_otel_proto``). The server JSON-encodes
each value once on ingest (``Span.from_otel_proto`` → ``dump_span_attribute_value``), so
``span.inputs`` reads back as the dict that went in. Sending JSON text here would be encoded a
second time and read back as a string.

``"json"`` (OTLP collectors, the file backend): scalars stay typed, while the ``mlflow.*``
values and any dict or list are JSON text, as MLflow's own OpenTelemetry exporter emits them
(its span attributes hold ``json.dumps`` output). Tracing back-ends (Jaeger, Tempo, Honeycomb)
index strings; few handle nested key-value lists.

Both carry what MLflow reads: ``mlflow.spanType``, ``mlflow.spanInputs``, ``mlflow.spanOutputs``
on every span and ``mlflow.traceTag.<key>`` (the trace name and tags) on the root span.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from routetrace.core.model import Span, SpanEvent, Trace

__all__ = [
    "SPAN_INPUTS",
    "SPAN_OUTPUTS",
    "SPAN_TYPE",
    "TRACE_TAG_PREFIX",
    "AttributeStyle",
    "decode_any_value_json",
    "encode_json",
    "encode_protobuf",
    "protobuf_available",
    "trace_id_hex",
]

AttributeStyle = Literal["native", "json"]

# mlflow/tracing/constant.py: SpanAttributeKey
SPAN_INPUTS = "mlflow.spanInputs"
SPAN_OUTPUTS = "mlflow.spanOutputs"
SPAN_TYPE = "mlflow.spanType"
TRACE_REQUEST_ID = "mlflow.traceRequestId"
TRACE_TAG_PREFIX = "mlflow.traceTag."
EXPERIMENT_ID = "mlflow.experimentId"
# Resource attributes naming the experiment for plain collectors (the MLflow server takes it
# from the x-mlflow-experiment-id header instead).
RESOURCE_EXPERIMENT_ID = "mlflow.experiment.id"
RESOURCE_EXPERIMENT_NAME = "mlflow.experiment.name"
SCOPE_NAME = "routetrace"

_STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_SPAN_KIND_INTERNAL = 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def trace_id_hex(trace_id: str) -> str:
    """``tr-<32 hex>`` → the 32 hex digits OTLP carries."""
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def span_attributes(span: Span, trace: Trace, style: AttributeStyle) -> dict[str, Any]:
    """The attributes a span is exported with, before the AnyValue encoding.

    The ``json`` style also puts the trace tags on the root span as ``mlflow.traceTag.<key>``
    (what MLflow's server restores tags from when spans are all it gets). The ``native`` style
    leaves them out: the MLflow backend sends the tags in the trace info, and MLflow's UI would
    list them as span attributes, which its own SDK's traces do not have.
    """
    attrs: dict[str, Any] = dict(span.attributes)
    is_root = span.parent_id is None
    if style == "json":
        attrs[SPAN_TYPE] = _dumps(span.span_type)
        if span.inputs is not None:
            attrs[SPAN_INPUTS] = _dumps(span.inputs)
        if span.outputs is not None:
            attrs[SPAN_OUTPUTS] = _dumps(span.outputs)
        attrs[TRACE_REQUEST_ID] = _dumps(trace.info.trace_id)
    else:
        attrs[SPAN_TYPE] = span.span_type
        if span.inputs is not None:
            attrs[SPAN_INPUTS] = span.inputs
        if span.outputs is not None:
            attrs[SPAN_OUTPUTS] = span.outputs
        attrs[TRACE_REQUEST_ID] = trace.info.trace_id
    if is_root and style == "json":
        for key, value in trace.info.tags.items():
            attrs[TRACE_TAG_PREFIX + key] = str(value)
    return attrs


def status_code(span: Span, style: AttributeStyle) -> int:
    """OTLP status code; ``native`` (MLflow) reports a span that ended normally as OK, as
    MLflow's SDK does (its UI shows UNSET as an unknown state)."""
    code = _STATUS_CODES.get(str(span.status.status_code), 0)
    if code == 0 and style == "native":
        return 1
    return code


# -- OTLP-JSON ----------------------------------------------------------------------------
def _any_json(value: Any, style: AttributeStyle) -> dict[str, Any]:
    """An OTLP-JSON ``AnyValue`` (int64 as a decimal string, as the spec's JSON mapping has)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"stringValue": str(value)}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if style == "json":
        return {"stringValue": _dumps(value)}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [
            {"key": str(k), "value": _any_json(v, style)} for k, v in value.items()
        ]}}
    if isinstance(value, (list, tuple, set, frozenset)):
        return {"arrayValue": {"values": [_any_json(v, style) for v in value]}}
    return {"stringValue": str(value)}


def _kv_json(attrs: Mapping[str, Any], style: AttributeStyle) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_json(v, style)} for k, v in attrs.items()]


def _event_json(event: SpanEvent, style: AttributeStyle) -> dict[str, Any]:
    return {
        "timeUnixNano": str(event.timestamp),
        "name": event.name,
        "attributes": _kv_json(event.attributes, style),
    }


def _span_json(span: Span, trace: Trace, style: AttributeStyle) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace_id_hex(trace.info.trace_id),
        "spanId": span.span_id,
        "name": span.name,
        "kind": _SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(span.start_time_ns),
        "endTimeUnixNano": str(span.end_time_ns or span.start_time_ns),
        "attributes": _kv_json(span_attributes(span, trace, style), style),
        "status": {"code": status_code(span, style)},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    if span.status.description:
        out["status"]["message"] = span.status.description
    if span.events:
        out["events"] = [_event_json(e, style) for e in span.events]
    return out


def encode_json(
    traces: Iterable[Trace],
    *,
    resource: Mapping[str, Any] | None = None,
    style: AttributeStyle = "json",
) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP-JSON (hex ids, camelCase, int64 as strings)."""
    spans = [_span_json(s, t, style) for t in traces for s in t.data.spans]
    return {
        "resourceSpans": [{
            "resource": {"attributes": _kv_json(resource or {}, "json")},
            "scopeSpans": [{"scope": {"name": SCOPE_NAME}, "spans": spans}],
        }]
    }


# -- protobuf -----------------------------------------------------------------------------
def protobuf_available() -> bool:
    try:
        import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def _set_any(pb: Any, value: Any, style: AttributeStyle) -> None:
    if value is None:
        pb.SetInParent()  # an empty AnyValue, as OTLP-JSON's {} reads
        return
    if isinstance(value, bool):
        pb.bool_value = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            pb.int_value = value
        else:
            pb.string_value = str(value)
    elif isinstance(value, float):
        pb.double_value = value
    elif isinstance(value, str):
        pb.string_value = value
    elif isinstance(value, (bytes, bytearray)):
        pb.bytes_value = bytes(value)
    elif style == "json":
        pb.string_value = _dumps(value)
    elif isinstance(value, Mapping):
        kvlist = pb.kvlist_value
        kvlist.SetInParent()  # an empty dict must still read back as {}
        for k, v in value.items():
            kv = kvlist.values.add()
            kv.key = str(k)
            _set_any(kv.value, v, style)
    elif isinstance(value, (list, tuple, set, frozenset)):
        array = pb.array_value
        array.SetInParent()
        for v in value:
            _set_any(array.values.add(), v, style)
    else:
        pb.string_value = str(value)


def _add_attrs(repeated: Any, attrs: Mapping[str, Any], style: AttributeStyle) -> None:
    for key, value in attrs.items():
        kv = repeated.add()
        kv.key = key
        _set_any(kv.value, value, style)


def encode_protobuf(
    traces: Iterable[Trace],
    *,
    resource: Mapping[str, Any] | None = None,
    style: AttributeStyle = "json",
) -> bytes:
    """An ``ExportTraceServiceRequest`` serialised as protobuf (needs opentelemetry-proto)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _add_attrs(rs.resource.attributes, resource or {}, "json")
    ss = rs.scope_spans.add()
    ss.scope.name = SCOPE_NAME
    for trace in traces:
        tid = bytes.fromhex(trace_id_hex(trace.info.trace_id))
        for span in trace.data.spans:
            pb = ss.spans.add()
            pb.trace_id = tid
            pb.span_id = bytes.fromhex(span.span_id)
            if span.parent_id:
                pb.parent_span_id = bytes.fromhex(span.parent_id)
            pb.name = span.name
            pb.kind = _SPAN_KIND_INTERNAL
            pb.start_time_unix_nano = span.start_time_ns
            pb.end_time_unix_nano = span.end_time_ns or span.start_time_ns
            _add_attrs(pb.attributes, span_attributes(span, trace, style), style)
            pb.status.code = status_code(span, style)
            if span.status.description:
                pb.status.message = span.status.description
            for event in span.events:
                ev = pb.events.add()
                ev.time_unix_nano = event.timestamp
                ev.name = event.name
                _add_attrs(ev.attributes, event.attributes, style)
    return request.SerializeToString()


# -- reading MLflow's proto-JSON back ------------------------------------------------------
def decode_any_value_json(value: Mapping[str, Any]) -> Any:
    """Decode an ``AnyValue`` from protobuf's JSON mapping (either field-name style)."""
    for key, item in value.items():
        if key in ("string_value", "stringValue", "bool_value", "boolValue",
                   "double_value", "doubleValue"):
            return item
        if key in ("int_value", "intValue"):
            return int(item)
        if key in ("bytes_value", "bytesValue"):
            return base64.b64decode(item)
        if key in ("array_value", "arrayValue"):
            return [decode_any_value_json(v) for v in item.get("values", ())]
        if key in ("kvlist_value", "kvlistValue"):
            return {kv["key"]: decode_any_value_json(kv.get("value", {}))
                    for kv in item.get("values", ())}
    return None


def status_name(code: Any) -> str:
    """A status code from proto-JSON (``"STATUS_CODE_OK"`` or ``1``) as ``"OK"``."""
    if isinstance(code, int):
        return _STATUS_NAMES.get(code, "UNSET")
    text = str(code or "")
    return text.removeprefix("STATUS_CODE_") or "UNSET"
