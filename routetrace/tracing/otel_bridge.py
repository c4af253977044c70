"""OpenTelemetry interop: OpenTelemetry-instrumented libraries land in routetrace's traces.

routetrace's current span *is* the current OpenTelemetry span (a ``LiveSpan`` implements the
OpenTelemetry ``Span`` API and is stored in the OpenTelemetry context), so
``propagate.inject`` writes a ``traceparent`` with routetrace's ids. When the application has
not configured a ``TracerProvider`` of its own, routetrace installs one whose tracers create
child ``LiveSpan``s inside the current routetrace trace. Outside a trace they return a
non-recording span: instrumentation alone never creates traces.

An application that already set an SDK ``TracerProvider`` keeps it: its spans still carry
routetrace's trace id as their parent (same context), but are exported by the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from routetrace.tracing.span import LiveSpan

__all__ = ["RoutetraceTracerProvider", "install"]

log = logging.getLogger("routetrace")


class _BridgeTracer(otel_trace.Tracer):
    def __init__(self, scope: str, version: str | None) -> None:
        self.scope = scope
        self.version = version

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Any] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> otel_trace.Span:
        parent = otel_trace.get_current_span(context)
        if parent.__class__ is not LiveSpan:
            # Not inside a routetrace trace: keep whatever context came in (a remote parent
            # extracted from headers still propagates), record nothing.
            return otel_trace.NonRecordingSpan(parent.get_span_context())
        from routetrace.tracing.tracer import get_tracer

        span = get_tracer().start_span(name, "UNKNOWN", parent=parent, start_time_ns=start_time)
        if span.__class__ is LiveSpan:
            if attributes:
                span.set_attributes(attributes)
            if kind is not SpanKind.INTERNAL:
                span.set_attribute("otel.span_kind", kind.name)
            span.set_attribute("otel.scope.name", self.scope)
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Any] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[otel_trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time,
                               record_exception, set_status_on_exception)
        with otel_trace.use_span(
            span, end_on_exit=end_on_exit, record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class RoutetraceTracerProvider(otel_trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> otel_trace.Tracer:
        return _BridgeTracer(instrumenting_module_name, instrumenting_library_version)


def install() -> bool:
    """Make routetrace the global TracerProvider unless the application set one."""
    current = otel_trace.get_tracer_provider()
    if isinstance(current, RoutetraceTracerProvider):
        return True
    if not isinstance(current, otel_trace.ProxyTracerProvider):
        log.debug("routetrace: keeping the application's TracerProvider %r", current)
        return False
    otel_trace.set_tracer_provider(RoutetraceTracerProvider())
    return isinstance(otel_trace.get_tracer_provider(), RoutetraceTracerProvider)
