"""Build the stored form of a finished trace. Runs on the export worker, not the request path:
deferred captures, span processors, JSON, previews."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from routetrace.tracing import serialize
from routetrace.tracing.model import (
    METADATA_STATE_OVERRIDE,
    Span,
    SpanEvent,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
    format_trace_id,
)
from routetrace.tracing.processors import SpanProcessor, run_processors
from routetrace.tracing.serialize import clean

if TYPE_CHECKING:
    from routetrace.tracing.live_trace import LiveTrace
    from routetrace.tracing.span import LiveSpan

__all__ = ["PREVIEW_MAX_CHARS", "build_trace"]

log = logging.getLogger("routetrace")

PREVIEW_MAX_CHARS = 1000
SCHEMA_VERSION = "3"


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


def _events(span: LiveSpan) -> list[SpanEvent]:
    if not span._events:
        return []
    return [
        SpanEvent(
            clean(e.name), e.timestamp,
            {k: serialize.to_jsonable(v) for k, v in e.attributes.items()},
        )
        for e in span._events
    ]


def build_trace(live: LiveTrace, processors: tuple[SpanProcessor, ...]) -> Trace:
    """The stored form of ``live``; its experiment id is stamped when the batch is written."""
    root = live.root
    assert root is not None  # a LiveTrace is created with its root
    spans = live.spans
    for span in spans:
        deferred = span._deferred
        if deferred is not None:
            span._deferred = None
            try:
                deferred(span)
            except Exception:
                log.warning("routetrace: building span %r failed", span.name, exc_info=True)
    if processors:
        for span in spans:
            run_processors(processors, span)

    trace_id = format_trace_id(live.trace_id)
    root_end = root.end_time_ns or root.start_time_ns
    model_spans = []
    for span in spans:
        end = span.end_time_ns
        attributes = _attributes(span)
        if end is None:
            # Still open when the root ended (e.g. an unconsumed generator): close it there.
            end = max(root_end, span.start_time_ns)
            attributes["routetrace.unfinished"] = True
        parent = span.parent_id
        model_spans.append(
            Span(
                trace_id=trace_id,
                span_id=span.span_id,
                parent_id=parent,
                name=clean(span.name),
                span_type=str(span.span_type),
                start_time_ns=span.start_time_ns,
                end_time_ns=end,
                status=SpanStatus(span.status, clean(span.status_description)),
                inputs_json=span._inputs_json or "null",
                outputs_json=span._outputs_json or "null",
                attributes=attributes,
                events=_events(span),
            )
        )
    if live.remote_parent_span_id is not None:
        model_spans[0].attributes["routetrace.remote_parent_span_id"] = (
            f"{live.remote_parent_span_id:016x}"
        )

    request_preview = serialize.truncate(
        root._inputs_json if live.request_preview is None else clean(live.request_preview),
        PREVIEW_MAX_CHARS,
    )
    response_preview = serialize.truncate(
        root._outputs_json if live.response_preview is None else clean(live.response_preview),
        PREVIEW_MAX_CHARS,
    )

    tags = {"mlflow.traceName": clean(root.name)}
    if live.tags:
        tags.update((clean(k), clean(v)) for k, v in live.tags.items())
    metadata = {"mlflow.trace_schema.version": SCHEMA_VERSION}
    if live.run_id:
        metadata["mlflow.sourceRun"] = live.run_id
    if live.metadata:
        metadata.update((clean(k), clean(v)) for k, v in live.metadata.items())
    if live.aborted:
        metadata["routetrace.aborted"] = live.aborted
    state = "ERROR" if root.status == "ERROR" else "OK"
    state = metadata.pop(METADATA_STATE_OVERRIDE, state)

    info = TraceInfo(
        trace_id=trace_id,
        experiment_id="",
        experiment_name=live.destination.name,
        request_time=root.start_time_ns // 1_000_000,
        execution_duration=(root_end - root.start_time_ns) // 1_000_000,
        state=state,
        request_preview=request_preview,
        response_preview=response_preview,
        tags=tags,
        trace_metadata=metadata,
    )
    return Trace(info, TraceData(model_spans))
