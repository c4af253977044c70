"""OTLP ``ExportTraceServiceRequest`` protobuf bytes, written straight from the worker's
:class:`~routetrace.core.build.TraceRecord` s.

A small writer of protobuf's wire format instead of opentelemetry-proto's message objects:
setting fields one by one on message objects and serialising them costs several Python calls
per field, while here a message is its fields' bytes (tags known in advance), joined once and
put behind its tag and length; a span's fields are appended to one buffer. What repeats is
encoded once: the trace id, ``mlflow.traceRequestId`` and the trace tags once per trace;
attribute keys, (key, value) pairs of strings and integers (the HTTP attributes), span names,
span types and statuses once per process (bounded caches). Nothing here needs
opentelemetry-proto.

The attributes are those of :func:`~routetrace.backends.otlp_encoding.span_attributes`, in its
order and with its styles (that function itself runs only for a span with an attribute named
like one of MLflow's); the messages are opentelemetry-proto's (``trace/v1/trace.proto``,
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
    attribute_json,
    json_text,
    span_attributes,
    status_code,
    trace_id_hex,
    trace_tags,
)
from routetrace.core.build import TraceRecord

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


def _varint(n: int) -> bytes:
    """An unsigned varint (``n`` >= 0)."""
    if n < 128:
        return _SMALL[n]
    if n < 16384:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
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
    if cls is dict and style == "native":  # inputs and outputs: straight to the loop
        return _kvlist(value, style)
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
        return _delimited(b"\x0a", attribute_json(value).encode())
    if isinstance(value, Mapping):
        return _kvlist(value, style)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _delimited(b"\x2a", b"".join(
            [_delimited(b"\x0a", _any(v, style)) for v in value]))
    return _delimited(b"\x0a", str(value).encode())


def _kvlist(value: Mapping[Any, Any], style: AttributeStyle) -> bytes:
    """A ``kvlistValue``; string values, the most common, written inline."""
    parts = []
    for k, v in value.items():
        key = _keys.get(k) if k.__class__ is str else None
        if key is None:
            key = _key(str(k))
        if v.__class__ is str:
            data = v.encode()
            n = len(data)
            item = b"\x0a" + (_SMALL[n] if n < 128 else _varint(n)) + data
        else:
            item = _any(v, style)
        n = len(item)
        kv = key + b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + item
        n = len(kv)
        parts.append(b"\x0a" + (_SMALL[n] if n < 128 else _varint(n)) + kv)
    return _delimited(b"\x32", b"".join(parts))


_keys: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """``KeyValue.key`` with its tag and length."""
    encoded = _keys.get(key)
    if encoded is None:
        encoded = _delimited(b"\x0a", key.encode())
        if len(_keys) < _CACHE_LIMIT:
            _keys[key] = encoded
    return encoded


def _key_value(key: str, value: Any, style: AttributeStyle) -> bytes:
    """A ``KeyValue`` message behind its length: a repeated field's bytes but the tag."""
    kv = _key(key) + _delimited(b"\x12", _any(value, style))
    n = len(kv)
    return (_SMALL[n] if n < 128 else _varint(n)) + kv


# (key, value, type) -> _key_value(): HTTP attributes repeat from request to request. Keyed by
# the exact type too, as True == 1; floats are left out (0.0 == -0.0). Short ones only, and
# emptied when full, so high-cardinality values cannot grow it or crowd it out for long.
_pairs: dict[tuple[str, Any, type], bytes] = {}
_CACHED_TYPES = (str, int, bool)
_CACHED_PAIR_BYTES = 160


def _put_attributes(buf: bytearray, tag: bytes, attrs: Mapping[str, Any],
                    style: AttributeStyle) -> None:
    """Append ``attrs`` to ``buf`` as repeated ``KeyValue`` fields numbered by ``tag``."""
    for key, value in attrs.items():
        cls = value.__class__
        if cls is str or cls is int or cls is bool:  # encoded the same in both styles
            pair = (key, value, cls)
            field = _pairs.get(pair)
            if field is None:
                field = _key_value(key, value, style)
                if len(field) <= _CACHED_PAIR_BYTES:
                    if len(_pairs) >= _CACHE_LIMIT:
                        _pairs.clear()
                    _pairs[pair] = field
        else:
            field = _key_value(key, value, style)
        buf += tag
        buf += field


def _attributes(tag: bytes, attrs: Mapping[str, Any], style: AttributeStyle) -> bytes:
    """``attrs`` as repeated ``KeyValue`` fields numbered by ``tag``."""
    buf = bytearray()
    _put_attributes(buf, tag, attrs, style)
    return bytes(buf)


_span_types: dict[tuple[str, str], bytes] = {}


def _span_type(span_type: str, style: AttributeStyle) -> bytes:
    """The ``mlflow.spanType`` attribute field, encoded once per type and style."""
    value = json_text(span_type) if style == "json" else span_type
    encoded = _attributes(b"\x4a", {SPAN_TYPE: value}, style)
    if len(_span_types) < _CACHE_LIMIT:
        _span_types[(span_type, style)] = encoded
    return encoded


_names: dict[str, bytes] = {}


def _name(name: str) -> bytes:
    """``Span.name`` with its tag and length (names are few: routes, functions)."""
    encoded = _delimited(b"\x2a", name.encode()) if name else b""
    if len(_names) < _CACHE_LIMIT:
        _names[name] = encoded
    return encoded


def _status(code: str, description: str, style: AttributeStyle) -> bytes:
    number = status_code(code, style)
    body = b"\x18" + _SMALL[number] if number else b""
    if description:
        body = _delimited(b"\x12", description.encode()) + body
    return _delimited(b"\x7a", body)


# ``Span.status`` of a span without a description, by style and status code.
_STATUS = {(style, code): _status(code, "", style)  # type: ignore[arg-type]
           for style in ("json", "native") for code in ("UNSET", "OK", "ERROR")}


def _events(events: list[tuple[str, int, dict[str, Any]]], style: AttributeStyle) -> bytes:
    out = []
    for name, timestamp, attrs in events:
        body = bytearray(b"\x09" + _FIXED64.pack(timestamp) if timestamp else b"")
        if name:
            body += _delimited(b"\x12", name.encode())
        if attrs:
            _put_attributes(body, b"\x1a", attrs, style)
        out.append(_delimited(b"\x5a", body))
    return b"".join(out)


def _string_field(tag: bytes, key: bytes, text: str) -> bytes:
    """A ``KeyValue`` field of a string value (``key`` from :func:`_key`), uncached: for
    values that are new every time (trace ids, inputs, outputs)."""
    data = text.encode()
    n = len(data)
    value = b"\x0a" + (_SMALL[n] if n < 128 else _varint(n)) + data
    n = len(value)
    kv = key + b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + value
    n = len(kv)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + kv


_INPUTS_KEY = _key(SPAN_INPUTS)
_OUTPUTS_KEY = _key(SPAN_OUTPUTS)
_REQUEST_ID_KEY = _key(TRACE_REQUEST_ID)


def _io_field(key: bytes, text: str, style: AttributeStyle) -> bytes:
    """``mlflow.spanInputs`` / ``mlflow.spanOutputs``: the recorded JSON text as it is
    (``json``), or its value, sent typed (``native``)."""
    if style == "json":
        return _string_field(b"\x4a", key, text)
    return _delimited(b"\x4a", key + _delimited(b"\x12", _any(json.loads(text), style)))


def _trace_spans(record: TraceRecord, style: AttributeStyle, out: list[bytes]) -> None:
    """Append the ``ScopeSpans.spans`` fields of ``record``'s spans to ``out``."""
    trace_id = b"\x0a\x10" + bytes.fromhex(trace_id_hex(record.trace_id))
    if style == "json":
        request_id = _string_field(b"\x4a", _REQUEST_ID_KEY, json_text(record.trace_id))
        tags = {TRACE_TAG_PREFIX + k: str(v) for k, v in trace_tags(record).items()}
        root_tags = _attributes(b"\x4a", tags, style)
    else:
        request_id = _string_field(b"\x4a", _REQUEST_ID_KEY, record.trace_id)
        tags = {}
        root_tags = b""
    for span in record.spans:
        body = bytearray(trace_id)
        body += b"\x12\x08"
        body += bytes.fromhex(span.span_id)
        parent = span.parent_id
        if parent:
            body += b"\x22\x08"
            body += bytes.fromhex(parent)
        name = _names.get(span.name)
        body += name if name is not None else _name(span.name)
        body += b"\x30\x01"  # kind: SPAN_KIND_INTERNAL
        start = span.start_time_ns
        end = span.end_time_ns or start
        if start and end:
            body += _TIMES.pack(0x39, start, 0x41, end)
        else:
            if start:
                body += b"\x39" + _FIXED64.pack(start)
            if end:
                body += b"\x41" + _FIXED64.pack(end)
        attrs = span.attributes
        is_root = parent is None
        if attrs and not (_RESERVED.isdisjoint(attrs)
                          and (not is_root or tags.keys().isdisjoint(attrs))):
            # An attribute named like one of MLflow's: the merged dict decides order and value.
            _put_attributes(body, b"\x4a", span_attributes(span, record, style), style)
        else:
            if attrs:
                _put_attributes(body, b"\x4a", attrs, style)
            span_type = _span_types.get((span.span_type, style))
            body += span_type if span_type is not None else _span_type(span.span_type, style)
            if span.inputs_json != "null":
                body += _io_field(_INPUTS_KEY, span.inputs_json, style)
            if span.outputs_json != "null":
                body += _io_field(_OUTPUTS_KEY, span.outputs_json, style)
            body += request_id
            if is_root:
                body += root_tags
        if span.events:
            body += _events(span.events, style)
        status = None if span.status_description else _STATUS.get((style, span.status_code))
        body += status or _status(span.status_code, span.status_description, style)
        n = len(body)
        out.append(b"\x12" + (_SMALL[n] if n < 128 else _varint(n)) + body)


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
