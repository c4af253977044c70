"""Build a finished trace, once, on the export worker: deferred captures, span processors,
then one :class:`TraceRecord` of plain values that every backend turns into its final form
(the local store's row, an OTLP payload) without building anything again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from routetrace.core import serialize
from routetrace.core.model import (
    METADATA_STATE_OVERRIDE,
    Span,
    SpanEvent,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
    format_trace_id,
)
from routetrace.core.processors import SpanProcessor, run_processors
from routetrace.core.serialize import clean

if TYPE_CHECKING:
    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.span import LiveSpan

__all__ = ["PREVIEW_MAX_CHARS", "SCHEMA_KEY", "SCHEMA_VERSION", "SpanRecord", "TraceRecord",
           "build_trace", "record_of", "record_trace", "to_trace"]

log = logging.getLogger("routetrace")

PREVIEW_MAX_CHARS = 1000
SCHEMA_KEY = "mlflow.trace_schema.version"
SCHEMA_VERSION = "3"
NAME_TAG = "mlflow.traceName"


class SpanRecord(NamedTuple):
    """One finished span as plain values; inputs and outputs as the JSON text recorded."""

    span_id: str
    parent_id: str | None
    name: str
    span_type: str
    start_time_ns: int
    end_time_ns: int
    status_code: str
    status_description: str
    inputs_json: str
    outputs_json: str
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]] | None  # (name, timestamp ns, attributes)


class TraceRecord(NamedTuple):
    """One finished trace as plain values: what every backend's final form is made of.

    ``tags`` leaves out the trace name (``name``) and ``metadata`` the schema version, which
    every trace has: a store keeps those in a column or not at all.
    """

    trace_id: str  # "tr-" and 32 hex digits
    experiment_name: str | None
    name: str
    request_time: int  # ms
    execution_duration: int  # ms
    state: str
    request_preview: str | None
    response_preview: str | None
    run_id: str | None
    tags: dict[str, str]
    metadata: dict[str, str]
    spans: list[SpanRecord]


def _attributes(span: LiveSpan) -> dict:
    attrs = span._attributes
    if not attrs:
        return {}
    out = {}
    for key, value in attrs.items():
        if not key.isascii():
            key = clean(key)
        cls = value.__class__
        if cls is str:  # the common case, inlined: most attributes are ASCII strings
            out[key] = value if value.isascii() else clean(value)
        elif value is None or cls is int or cls is bool or cls is float:
            out[key] = value
        else:
            out[key] = serialize.to_jsonable(value)
    return out


def _events(span: LiveSpan) -> list[tuple[str, int, dict[str, Any]]] | None:
    if not span._events:
        return None
    return [
        (clean(e.name), e.timestamp,
         {k: serialize.to_jsonable(v) for k, v in e.attributes.items()})
        for e in span._events
    ]


def _preview(recorded: str | None, custom: str | None) -> str | None:
    """A trace's request or response preview: the one the app set, else the root's JSON."""
    text = recorded if custom is None else clean(custom)
    if text is not None and len(text) > PREVIEW_MAX_CHARS:
        text = serialize.truncate(text, PREVIEW_MAX_CHARS)
    return text


def record_trace(live: LiveTrace, processors: tuple[SpanProcessor, ...]) -> TraceRecord:
    """The deferred captures and ``processors`` run on the live spans, then the record."""
    root = live.root
    assert root is not None  # a LiveTrace is created with its root
    spans = live.spans
    # An attribute dict a deferred hook built of clean plain values (the middleware's, on the
    # root span): taken as it is unless a processor may have changed it.
    trusted = None
    for span in spans:
        deferred = span._deferred
        if deferred is not None:
            span._deferred = None
            try:
                built = deferred(span)
            except Exception:
                log.warning("routetrace: building span %r failed", span.name, exc_info=True)
            else:
                if built is not None and not processors:
                    trusted = built
    if processors:
        for span in spans:
            run_processors(processors, span)

    root_start = root.start_time_ns
    root_end = root.end_time_ns or root_start
    records = []
    for span in spans:
        end = span.end_time_ns
        attributes = span._attributes
        if attributes is None:
            attributes = {}
        elif attributes is not trusted:
            attributes = _attributes(span)
        if end is None:
            # Still open when the root ended (e.g. an unconsumed generator): close it there.
            end = max(root_end, span.start_time_ns)
            attributes["routetrace.unfinished"] = True
        parent = span.parent_span_id
        name = span._name
        description = span._status_description
        records.append(SpanRecord(
            f"{span.span_id_int:016x}", None if parent is None else f"{parent:016x}",
            name if name.isascii() else clean(name), str(span._span_type),
            span.start_time_ns, end, span._status,
            description if description.isascii() else clean(description),
            span._inputs_json or "null", span._outputs_json or "null",
            attributes, _events(span) if span._events else None,
        ))
    if live.remote_parent_span_id is not None:
        records[0].attributes["routetrace.remote_parent_span_id"] = (
            f"{live.remote_parent_span_id:016x}"
        )

    request_preview = _preview(root._inputs_json, live.request_preview)
    response_preview = _preview(root._outputs_json, live.response_preview)
    tags = live.tags
    if not tags:
        tags = {}
    elif "".join(tags).isascii() and "".join(tags.values()).isascii():
        tags = dict(tags)
    else:
        tags = {clean(k): clean(v) for k, v in tags.items()}
    name = tags.pop(NAME_TAG, None) or records[0].name
    metadata = {}
    if live.run_id:
        metadata["mlflow.sourceRun"] = live.run_id
    if live.metadata:
        metadata.update((clean(k), clean(v)) for k, v in live.metadata.items())
    if live.aborted:
        metadata["routetrace.aborted"] = live.aborted
    state = "ERROR" if root._status == "ERROR" else "OK"
    state = metadata.pop(METADATA_STATE_OVERRIDE, state)
    return TraceRecord(
        format_trace_id(live.trace_id), live.destination.name, name,
        root_start // 1_000_000, (root_end - root_start) // 1_000_000,
        state,
        request_preview, response_preview, metadata.get("mlflow.sourceRun"),
        tags, metadata, records,
    )


def to_span(trace_id: str, s: SpanRecord) -> Span:
    """A span of the read model from a record."""
    (span_id, parent_id, name, span_type, start, end, code, description, inputs_json,
     outputs_json, attributes, events) = s
    return Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent_id, name=name,
        span_type=span_type, start_time_ns=start, end_time_ns=end,
        status=SpanStatus(code, description), attributes=attributes,
        events=[SpanEvent(n, ts, a) for n, ts, a in events] if events else [],
        inputs_json=inputs_json, outputs_json=outputs_json,
    )


def to_trace(record: TraceRecord, experiment_id: str = "",
             experiment_name: str | None = None) -> Trace:
    """The read model of a record, for backends that send :class:`Trace` objects."""
    tid = record.trace_id
    tags = {NAME_TAG: record.name, **record.tags}
    metadata = {SCHEMA_KEY: SCHEMA_VERSION, **record.metadata}
    info = TraceInfo(
        trace_id=tid, experiment_id=experiment_id,
        experiment_name=record.experiment_name if experiment_name is None else experiment_name,
        request_time=record.request_time, execution_duration=record.execution_duration,
        state=record.state, request_preview=record.request_preview,
        response_preview=record.response_preview, tags=tags, trace_metadata=metadata,
    )
    return Trace(info, TraceData([to_span(tid, s) for s in record.spans]))


def record_of(trace: Trace) -> TraceRecord:
    """A trace read back or replayed from a spool, as the worker would have built it: the
    inverse of :func:`to_trace`, for backends that write records."""
    info = trace.info
    tags = dict(info.tags)
    name = tags.pop(NAME_TAG, None)
    metadata = {k: v for k, v in info.trace_metadata.items()
                if not (k == SCHEMA_KEY and v == SCHEMA_VERSION)}
    spans = []
    for s in trace.data.spans:
        inputs, outputs = s.io_json()
        spans.append(SpanRecord(
            s.span_id, s.parent_id, s.name, s.span_type, s.start_time_ns, s.end_time_ns,
            str(s.status.status_code), s.status.description, inputs, outputs, s.attributes,
            [(e.name, e.timestamp, e.attributes) for e in s.events] or None,
        ))
    return TraceRecord(
        info.trace_id, info.experiment_name, name, info.request_time,  # type: ignore[arg-type]
        info.execution_duration, str(info.state), info.request_preview,  # type: ignore[arg-type]
        info.response_preview, metadata.get("mlflow.sourceRun"), tags, metadata, spans,
    )


def build_trace(live: LiveTrace, processors: tuple[SpanProcessor, ...]) -> Trace:
    """The read model of ``live``; its experiment id is stamped when the batch is written."""
    return to_trace(record_trace(live, processors))
