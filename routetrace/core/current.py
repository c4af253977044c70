"""The trace current in this context: find its span and id, and update it while it runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as otel_trace

from routetrace.core import otel_bridge
from routetrace.core.model import (
    METADATA_CLIENT_REQUEST_ID,
    METADATA_MODEL_ID,
    METADATA_SESSION,
    METADATA_STATE_OVERRIDE,
    METADATA_USER,
    TraceState,
    format_trace_id,
)
from routetrace.core.span import LiveSpan
from routetrace.core.tracer import get_tracer

__all__ = ["get_active_trace_id", "get_current_active_span", "update_current_trace"]

log = logging.getLogger("routetrace")


def get_current_active_span() -> LiveSpan | None:
    """The span current in this context, or None."""
    span: Any = otel_trace.get_current_span()
    if span.__class__ is not LiveSpan:
        # Another layer's span (FastAPI's own, the app's SDK span) may be current.
        span = otel_bridge.live_parent(span)
    if span is not None and not span.trace.finished:
        return span  # type: ignore[no-any-return]
    return None


def get_active_trace_id() -> str | None:
    """The ``tr-...`` id of the trace current in this context, or None."""
    span = get_current_active_span()
    return None if span is None else format_trace_id(span.trace.trace_id)


def update_current_trace(
    tags: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    client_request_id: str | None = None,
    request_preview: str | None = None,
    response_preview: str | None = None,
    state: str | None = None,
    model_id: str | None = None,
    session_id: str | None = None,
    user: str | None = None,
) -> None:
    """Update the trace current in this context, with MLflow 3's arguments.

    ``tags`` and ``metadata`` are added (values stringified); ``client_request_id`` links the
    trace to your own request id; the previews replace the ones derived from the root span;
    ``state`` ("OK" or "ERROR") overrides the trace's state without touching any span's status;
    ``model_id``, ``session_id`` and ``user`` go into the metadata under MLflow's keys.
    """
    if request_preview is not None and not isinstance(request_preview, str):
        raise TypeError(f"request_preview must be a string, not {type(request_preview).__name__}")
    if response_preview is not None and not isinstance(response_preview, str):
        raise TypeError(
            f"response_preview must be a string, not {type(response_preview).__name__}"
        )
    if state is not None and str(state) not in (TraceState.OK, TraceState.ERROR):
        raise ValueError(f"state must be 'OK' or 'ERROR', not {state!r}")
    span = get_current_active_span()
    if span is None:
        if get_tracer().enabled:
            log.warning("routetrace: update_current_trace() called outside a trace; ignored")
        return
    live = span.trace
    extra = dict(metadata) if metadata else {}
    if model_id:
        extra[METADATA_MODEL_ID] = model_id
    if session_id is not None:
        extra[METADATA_SESSION] = session_id
    if user is not None:
        extra[METADATA_USER] = user
    if client_request_id is not None:
        extra[METADATA_CLIENT_REQUEST_ID] = client_request_id
    if state is not None:
        extra[METADATA_STATE_OVERRIDE] = str(state)
    if tags:
        live.set_tags(dict(tags))
    if extra:
        live.set_metadata(extra)
    if request_preview is not None:
        live.request_preview = request_preview
    if response_preview is not None:
        live.response_preview = response_preview
