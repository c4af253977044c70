"""OTLP ``ExportTraceServiceRequest`` protobuf bytes, written straight from the worker's
:class:`~routetrace.core.build.TraceRecord` s.

A small writer of protobuf's wire format instead of opentelemetry-proto's message objects:
setting fields one by one on message objects and serialising them costs several Python calls
per field, while here a message is its fields' bytes (tags known in advance), joined once and
put behind its tag and length. What repeats is encoded once: the trace id and
``mlflow.traceRequestId`` once per trace, the trace tags once per root, ``mlflow.spanType`` and
attribute keys once per process (bounded caches). Nothing here needs opentelemetry-proto.

The attributes are those of :func:`~routetrace.backends.otlp_encoding.span_attributes`, in its
order and with its styles; the messages are opentelemetry-proto's (``trace/v1/trace.proto``,
``common/v1/common.proto``), fields written in field-number order.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from routetrace.backends.otlp_encoding import (
    SCOPE_NAME,
    SPAN_INPUTS,
    SPAN_OUTPUTS,
    SPAN_TYPE,
    TRACE_REQUEST_ID,
    TRACE_TAG_PREFIX,
    AttributeStyle,
    json_text,
    span_attributes,
    status_code,
    trace_id_hex,
    trace_tags,
)
from routetrace.core.build import SpanRecord, TraceRecord

__all__ = ["encode_protobuf"]

# One byte a varint below 128: every tag here and most lengths.
_SMALL = [bytes((n,)) for n in range(128)]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MASK = 2**64 - 1
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
# Span fields 7 and 8 (start and end time, fixed64) with their tags, in one pack.
_TIMES = struct.Struct("<BQBQ")
_RESERVED = frozenset({SPAN_TYPE, SPAN_INPUTS, SPAN_OUTPUTS, TRACE_REQUEST_ID})
_CACHE_LIMIT = 4096  # keys and span types are few; a flood of unique ones is not cached
_attribute_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _varint(n: int) -> bytes:
    """An unsigned varint (``n`` >= 0)."""
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, body: bytes | bytearray) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    n = len(body)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + body


def _any(value: Any, style: AttributeStyle) -> bytes:
    """An ``AnyValue`` message's bytes, typed as ``otlp_encoding``'s OTLP-JSON has it (an empty
    message for None, so the key still reads back)."""
    cls = value.__class__
    if cls is str:
        return _delimited(b"\x0a", value.encode())
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + _varint(value & _UINT64_MASK)
        return _delimited(b"\x0a", str(value).encode())
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, str):
        return _delimited(b"\x0a", str.encode(value))
    if isinstance(value, (bytes, bytearray)):
        return _delimited(b"\x3a", bytes(value))
    if style == "json":
        return _delimited(b"\x0a", _attribute_json(value).encode())
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join(
            [_delimited(b"\x0a", _key(str(k)) + _delimited(b"\x12", _any(v, style)))
             for k, v in value.items()]))
    if isinstance(value, (list, tuple, set, frozenset)):
        return _delimited(b"\x2a", b"".join(
            [_delimited(b"\x0a", _any(v, style)) for v in value]))
    return _delimited(b"\x0a", str(value).encode())


_keys: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """``KeyValue.key`` with its tag and length."""
    encoded = _keys.get(key)
    if encoded is None:
        encoded = _delimited(b"\x0a", key.encode())
        if len(_keys) < _CACHE_LIMIT:
            _keys[key] = encoded
    return encoded


def _attributes(tag: bytes, attrs: Mapping[str, Any], style: AttributeStyle) -> bytes:
    """``attrs`` as repeated ``KeyValue`` fields numbered by ``tag``."""
    out = []
    for key, value in attrs.items():
        prefix = _keys.get(key)
        if prefix is None:
            prefix = _key(key)
        if value.__class__ is str:  # most values: written inline, lengths added up
            data = value.encode()
            n = len(data)
            if n < 126:
                kv = prefix + b"\x12" + _SMALL[n + 2] + b"\x0a" + _SMALL[n] + data
            else:
                kv = prefix + _delimited(b"\x12", _delimited(b"\x0a", data))
        else:
            kv = prefix + _delimited(b"\x12", _any(value, style))
        n = len(kv)
        out.append(tag + (_SMALL[n] if n < 128 else _varint(n)) + kv)
    return b"".join(out)


_span_types: dict[tuple[str, str], bytes] = {}


def _span_type(span_type: str, style: AttributeStyle) -> bytes:
    """The ``mlflow.spanType`` attribute field, encoded once per type and style."""
    encoded = _span_types.get((span_type, style))
    if encoded is None:
        value = json_text(span_type) if style == "json" else span_type
        encoded = _attributes(b"\x4a", {SPAN_TYPE: value}, style)
        if len(_span_types) < _CACHE_LIMIT:
            _span_types[(span_type, style)] = encoded
    return encoded


def _status(span: SpanRecord, style: AttributeStyle) -> bytes:
    code = status_code(span.status_code, style)
    body = b"\x18" + _SMALL[code] if code else b""
    if span.status_description:
        body = _delimited(b"\x12", span.status_description.encode()) + body
    return _delimited(b"\x7a", body)


def _events(events: list[tuple[str, int, dict[str, Any]]], style: AttributeStyle) -> bytes:
    out = []
    for name, timestamp, attrs in events:
        body = b"\x09" + _FIXED64.pack(timestamp) if timestamp else b""
        if name:
            body += _delimited(b"\x12", name.encode())
        if attrs:
            body += _attributes(b"\x1a", attrs, style)
        out.append(_delimited(b"\x5a", body))
    return b"".join(out)


def _io(text: str, style: AttributeStyle) -> Any:
    """An input/output attribute's value: the recorded JSON text as it is (``json``) or its
    value, sent typed (``native``)."""
    return text if style == "json" else json.loads(text)


def _trace_spans(record: TraceRecord, style: AttributeStyle, out: list[bytes]) -> None:
    """Append the ``ScopeSpans.spans`` fields of ``record``'s spans to ``out``."""
    trace_id = b"\x0a\x10" + bytes.fromhex(trace_id_hex(record.trace_id))
    if style == "json":
        request_id = _attributes(b"\x4a", {TRACE_REQUEST_ID: json_text(record.trace_id)}, style)
        tags = {TRACE_TAG_PREFIX + k: str(v) for k, v in trace_tags(record).items()}
        root_tags = _attributes(b"\x4a", tags, style)
    else:
        request_id = _attributes(b"\x4a", {TRACE_REQUEST_ID: record.trace_id}, style)
        tags = {}
        root_tags = b""
    for span in record.spans:
        attrs = span.attributes
        is_root = span.parent_id is None
        if attrs and not (_RESERVED.isdisjoint(attrs)
                          and (not is_root or tags.keys().isdisjoint(attrs))):
            # An attribute named like one of MLflow's: the merged dict decides order and value.
            attributes = _attributes(b"\x4a", span_attributes(span, record, style), style)
        else:
            attributes = _attributes(b"\x4a", attrs, style) if attrs else b""
            attributes += _span_type(span.span_type, style)
            if span.inputs_json != "null":
                attributes += _attributes(
                    b"\x4a", {SPAN_INPUTS: _io(span.inputs_json, style)}, style)
            if span.outputs_json != "null":
                attributes += _attributes(
                    b"\x4a", {SPAN_OUTPUTS: _io(span.outputs_json, style)}, style)
            attributes += request_id
            if is_root:
                attributes += root_tags
        start = span.start_time_ns
        end = span.end_time_ns or start
        if start and end:
            times = _TIMES.pack(0x39, start, 0x41, end)
        else:
            times = (b"\x39" + _FIXED64.pack(start) if start else b"") + (
                b"\x41" + _FIXED64.pack(end) if end else b"")
        parent = span.parent_id
        body = b"".join((
            trace_id,
            b"\x12\x08", bytes.fromhex(span.span_id),
            b"\x22\x08" + bytes.fromhex(parent) if parent else b"",
            _delimited(b"\x2a", span.name.encode()) if span.name else b"",
            b"\x30\x01",  # kind: SPAN_KIND_INTERNAL
            times,
            attributes,
            _events(span.events, style) if span.events else b"",
            _status(span, style),
        ))
        out.append(_delimited(b"\x12", body))


_SCOPE = _delimited(b"\x0a", _delimited(b"\x0a", SCOPE_NAME.encode()))


def encode_protobuf(
    records: Iterable[TraceRecord],
    *,
    resource: Mapping[str, Any] | None = None,
    style: AttributeStyle = "json",
) -> bytes:
    """One ``ExportTraceServiceRequest`` holding every span of ``records``, serialised."""
    spans: list[bytes] = [_SCOPE]
    for record in records:
        _trace_spans(record, style, spans)
    scope_spans = _delimited(b"\x12", b"".join(spans))
    resource_attrs = _attributes(b"\x0a", resource, "json") if resource else b""
    resource_field = _delimited(b"\x0a", resource_attrs) if resource_attrs else b""
    return _delimited(b"\x0a", resource_field + scope_spans)
