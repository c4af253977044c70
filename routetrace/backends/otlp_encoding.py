"""The OTLP form of routetrace traces: the attributes a span is sent with, and OTLP-JSON.

Protobuf bytes are written by :mod:`routetrace.backends.otlp_protobuf` from the same
attributes; both take the export worker's :class:`~routetrace.core.build.TraceRecord` s.

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
from json.encoder import encode_basestring
from typing import Any, Literal

from routetrace.core.build import NAME_TAG, SpanRecord, TraceRecord
from routetrace.core.serialize import encoder

__all__ = [
    "SPAN_INPUTS",
    "SPAN_OUTPUTS",
    "SPAN_TYPE",
    "TRACE_TAG_PREFIX",
    "AttributeStyle",
    "attribute_json",
    "decode_any_value_json",
    "encode_json",
    "json_text",
    "span_attributes",
    "status_code",
    "trace_id_hex",
    "trace_tags",
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
# A value as MLflow's exporter writes it into a span attribute (``json.dumps``, non-ASCII kept).
attribute_json = encoder(default=str)


def trace_id_hex(trace_id: str) -> str:
    """``tr-<32 hex>`` → the 32 hex digits OTLP carries."""
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


def json_text(text: str) -> str:
    """A string as JSON text, as ``json.dumps(text, ensure_ascii=False)`` writes it."""
    return encode_basestring(text)


def trace_tags(record: TraceRecord) -> dict[str, str]:
    """The trace's tags as MLflow has them: the trace name, then the others."""
    return {NAME_TAG: record.name, **record.tags}


def span_attributes(span: SpanRecord, record: TraceRecord,
                    style: AttributeStyle) -> dict[str, Any]:
    """The attributes a span is exported with, before the AnyValue encoding.

    ``json`` sends the inputs and outputs as the JSON text the tracer recorded (what MLflow's
    exporter writes: ``json.dumps`` with its defaults), ``native`` as the values it holds.
    The ``json`` style also puts the trace tags on the root span as ``mlflow.traceTag.<key>``
    (what MLflow's server restores tags from when spans are all it gets). The ``native`` style
    leaves them out: the MLflow backend sends the tags in the trace info, and MLflow's UI would
    list them as span attributes, which its own SDK's traces do not have.
    """
    attrs: dict[str, Any] = dict(span.attributes)
    if style == "json":
        attrs[SPAN_TYPE] = json_text(span.span_type)
        if span.inputs_json != "null":
            attrs[SPAN_INPUTS] = span.inputs_json
        if span.outputs_json != "null":
            attrs[SPAN_OUTPUTS] = span.outputs_json
        attrs[TRACE_REQUEST_ID] = json_text(record.trace_id)
        if span.parent_id is None:
            for key, value in trace_tags(record).items():
                attrs[TRACE_TAG_PREFIX + key] = str(value)
    else:
        attrs[SPAN_TYPE] = span.span_type
        if span.inputs_json != "null":
            attrs[SPAN_INPUTS] = json.loads(span.inputs_json)
        if span.outputs_json != "null":
            attrs[SPAN_OUTPUTS] = json.loads(span.outputs_json)
        attrs[TRACE_REQUEST_ID] = record.trace_id
    return attrs


def status_code(code: str, style: AttributeStyle) -> int:
    """OTLP status code of a span status ``code``; ``native`` (MLflow) reports a span that
    ended normally as OK, as MLflow's SDK does (its UI shows UNSET as an unknown state)."""
    number = _STATUS_CODES.get(str(code), 0)
    if number == 0 and style == "native":
        return 1
    return number


# -- OTLP-JSON ----------------------------------------------------------------------------
def _any_json(value: Any, style: AttributeStyle) -> dict[str, Any]:
    """An OTLP-JSON ``AnyValue`` (int64 as a decimal string, as the spec's JSON mapping has)."""
    if value.__class__ is str:  # most values
        return {"stringValue": value}
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
        return {"stringValue": attribute_json(value)}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [
            {"key": str(k), "value": _any_json(v, style)} for k, v in value.items()
        ]}}
    if isinstance(value, (list, tuple, set, frozenset)):
        return {"arrayValue": {"values": [_any_json(v, style) for v in value]}}
    return {"stringValue": str(value)}


def _kv_json(attrs: Mapping[str, Any], style: AttributeStyle) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_json(v, style)} for k, v in attrs.items()]


def _span_json(span: SpanRecord, record: TraceRecord, style: AttributeStyle) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace_id_hex(record.trace_id),
        "spanId": span.span_id,
        "name": span.name,
        "kind": _SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(span.start_time_ns),
        "endTimeUnixNano": str(span.end_time_ns or span.start_time_ns),
        "attributes": _kv_json(span_attributes(span, record, style), style),
        "status": {"code": status_code(span.status_code, style)},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    if span.status_description:
        out["status"]["message"] = span.status_description
    if span.events:
        out["events"] = [
            {"timeUnixNano": str(timestamp), "name": name,
             "attributes": _kv_json(attributes, style)}
            for name, timestamp, attributes in span.events
        ]
    return out


def encode_json(
    records: Iterable[TraceRecord],
    *,
    resource: Mapping[str, Any] | None = None,
    style: AttributeStyle = "json",
) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` in OTLP-JSON (hex ids, camelCase, int64 as strings)."""
    spans = [_span_json(s, r, style) for r in records for s in r.spans]
    return {
        "resourceSpans": [{
            "resource": {"attributes": _kv_json(resource or {}, "json")},
            "scopeSpans": [{"scope": {"name": SCOPE_NAME}, "spans": spans}],
        }]
    }


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
