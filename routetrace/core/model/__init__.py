"""The shape of a trace once it is finished: what backends store and what searches return.

It mirrors MLflow's ``Trace`` (``trace.info`` and ``trace.data.spans``) so code written against
MLflow's entities reads the same here. These objects are plain data: the live, mutable spans
of a running trace are :class:`routetrace.core.span.LiveSpan`. ``kinds`` holds the names
(span types, states, trace ids, metadata keys), ``span`` the finished span, ``trace`` the
trace, its info and data.
"""

from routetrace.core.model.kinds import (
    METADATA_CLIENT_REQUEST_ID,
    METADATA_MODEL_ID,
    METADATA_SESSION,
    METADATA_STATE_OVERRIDE,
    METADATA_USER,
    SpanStatusCode,
    SpanType,
    TraceState,
    format_trace_id,
    parse_trace_id,
)
from routetrace.core.model.span import Span, SpanEvent, SpanStatus
from routetrace.core.model.trace import Trace, TraceData, TraceInfo, set_html_renderer

__all__ = [
    "METADATA_CLIENT_REQUEST_ID",
    "METADATA_MODEL_ID",
    "METADATA_SESSION",
    "METADATA_STATE_OVERRIDE",
    "METADATA_USER",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceState",
    "format_trace_id",
    "parse_trace_id",
    "set_html_renderer",
]
