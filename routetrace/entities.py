"""The entities of a trace under the names ``mlflow.entities`` gives them, so that
``from mlflow.entities import SpanType, Trace`` reads ``from routetrace.entities import ...``.

>>> from routetrace.entities import SpanType, SpanStatusCode, Trace
"""

from routetrace.core.model import (
    Span,
    SpanEvent,
    SpanStatus,
    SpanStatusCode,
    SpanType,
    Trace,
    TraceData,
    TraceInfo,
    TraceState,
)
from routetrace.core.span import LiveSpan, NoOpSpan

__all__ = [
    "LiveSpan",
    "NoOpSpan",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceState",
]
