"""OpenTelemetry interop: share the app's OpenTelemetry, never take it.

routetrace's current span *is* the current OpenTelemetry span (a ``LiveSpan`` implements the
OpenTelemetry ``Span`` API and is stored in the OpenTelemetry context), so
``propagate.inject`` writes a ``traceparent`` with routetrace's ids.

Nothing here runs at import. On the first trace, :func:`install` looks at the global
``TracerProvider``:

- none set: routetrace's bridge serves the OpenTelemetry API, in the provider slot only
  provisionally, so the app may still call ``trace.set_tracer_provider`` later (no "Overriding
  of current TracerProvider is not allowed"); its tracers create child ``LiveSpan``s inside the
  current trace, and a non-recording span outside one (instrumentation alone never creates
  traces);
- an SDK provider (set before, or later: the bridge's tracers notice and hand over): routetrace
  adds a span processor to it. The app's spans still go to the app's exporter, and each one
  started inside a request is mirrored into that request's trace, under its parent.

FastAPI's own telemetry spans (instrumentation scope ``fastapi``) are left out of routetrace's
traces unless the route table sets ``framework_spans = true``; spans started inside them nest
under their nearest kept ancestor.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from routetrace.core.span import LiveSpan

__all__ = [
    "RequestScope",
    "RoutetraceTracerProvider",
    "current_request",
    "install",
    "live_parent",
    "set_tracer_source",
]

log = logging.getLogger("routetrace")


class RequestScope(Protocol):
    """What the middleware tells the bridge about the request being served."""

    span: LiveSpan
    framework_spans: bool


# The request being served, set by the middleware beside the OpenTelemetry context: a
# framework that attaches a context of its own (FastAPI's telemetry attaches the one it
# extracted from the headers) hides routetrace's root span from the OpenTelemetry context,
# not from this.
current_request: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "routetrace_request", default=None
)

# SDK span id -> the LiveSpan standing for it in routetrace's trace (its mirror, or its
# nearest kept ancestor when the span itself is left out).
_stand_ins: dict[int, LiveSpan] = {}
_joined: list[Any] = []  # SDK providers routetrace added its processor to
# The global provider :func:`install` last dealt with: a root span compares it with the
# current one, so a provider the app sets after the first trace is joined at the next.
seen_provider: Any = None
_install_lock = threading.Lock()


def _no_tracer() -> Any:
    raise RuntimeError("routetrace.core.tracer was not imported: import routetrace")


# Where the bridge's spans are started: the process's tracer, handed in by
# ``routetrace.core.tracer`` (which imports this module, so this one cannot import it).
_tracer_source: Callable[[], Any] = _no_tracer


def set_tracer_source(source: Callable[[], Any]) -> None:
    """``source()`` is the tracer that starts the spans of OpenTelemetry instrumentations."""
    global _tracer_source
    _tracer_source = source


def _framework_span(scope: str | None) -> bool:
    return scope is not None and (scope == "fastapi" or scope.startswith("fastapi."))


def _keeps_framework_spans() -> bool:
    request = current_request.get()
    return request is not None and bool(request.framework_spans)


def live_parent(span: otel_trace.Span) -> LiveSpan | None:
    """The LiveSpan a new span should hang under when the current OpenTelemetry span is not one.

    A span the bridge left out stands for its parent, an SDK span for its mirror; anything
    else (no span, a remote parent another layer extracted) inside a request means the
    request's root.
    """
    if span.__class__ is _LeftOut:
        return span.live  # type: ignore[attr-defined,no-any-return]
    if _stand_ins:
        stand_in = _stand_ins.get(span.get_span_context().span_id)
        if stand_in is not None:
            return stand_in
    request = current_request.get()
    return None if request is None else request.span


class _LeftOut(otel_trace.NonRecordingSpan):
    """A framework span routetrace does not record; what starts inside it nests under ``live``."""

    def __init__(self, live: LiveSpan) -> None:
        super().__init__(live.get_span_context())
        self.live = live


class _BridgeTracer(otel_trace.Tracer):
    def __init__(self, scope: str, version: str | None) -> None:
        self.scope = scope
        self.version = version
        self._handed_over: tuple[Any, otel_trace.Tracer] | None = None

    def _app_tracer(self) -> otel_trace.Tracer | None:
        """The app's own tracer once it set a provider after routetrace took the free slot."""
        provider = otel_trace.get_tracer_provider()
        if provider is _provider:
            return None
        handed = self._handed_over
        if handed is None or handed[0] is not provider:
            install()  # join it
            handed = self._handed_over = (provider, provider.get_tracer(self.scope, self.version))
        return handed[1]

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
        app_tracer = self._app_tracer()
        if app_tracer is not None:
            return app_tracer.start_span(name, context, kind, attributes, links, start_time,
                                         record_exception, set_status_on_exception)
        parent: Any = otel_trace.get_current_span(context)
        if parent.__class__ is not LiveSpan:
            parent = live_parent(parent)
            if parent is None:
                # Not inside a routetrace trace: keep whatever context came in (a remote
                # parent extracted from headers still propagates), record nothing.
                return otel_trace.NonRecordingSpan(
                    otel_trace.get_current_span(context).get_span_context())
        if _framework_span(self.scope) and not _keeps_framework_spans():
            return _LeftOut(parent)
        span = _tracer_source().start_span(name, "UNKNOWN", parent=parent, start_time_ns=start_time)
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


_provider = RoutetraceTracerProvider()


class _MirrorProcessor:
    """An SDK span processor: each span the app's SDK records inside a routetrace trace is
    copied into that trace when it ends (the SDK's exporters get it as before)."""

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        try:
            parent: Any = otel_trace.get_current_span(parent_context)
            if parent.__class__ is not LiveSpan:
                parent = live_parent(parent)
                if parent is None:
                    return
            if parent.trace.finished:
                return
            span_id = span.get_span_context().span_id
            scope = getattr(span.instrumentation_scope, "name", None)
            if _framework_span(scope) and not _keeps_framework_spans():
                _stand_ins[span_id] = parent
                return
            mirror = LiveSpan(parent.trace, span_id, parent.span_id_int, span.name, "UNKNOWN",
                              span.start_time)
            parent.trace.add_child(mirror)
            _stand_ins[span_id] = mirror
        except Exception:
            log.warning("routetrace: could not mirror OpenTelemetry span", exc_info=True)

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        try:
            span_id = span.get_span_context().span_id
            mirror = _stand_ins.pop(span_id, None)
            if mirror is None or mirror.span_id_int != span_id:
                return  # not in a trace, or left out
            if mirror.trace.finished:
                return  # exported (or being built) already: never touch it from here
            mirror.update_name(span.name)
            if span.attributes:
                mirror.set_attributes(span.attributes)
            if span.kind is not SpanKind.INTERNAL:
                mirror.set_attribute("otel.span_kind", span.kind.name)
            mirror.set_attribute("otel.scope.name",
                                 getattr(span.instrumentation_scope, "name", ""))
            for event in span.events:
                mirror.add_event(event.name, event.attributes, event.timestamp)
            code = span.status.status_code
            if code is not otel_trace.StatusCode.UNSET:
                mirror.set_status(code.name, span.status.description)
            mirror.end(end_time_ns=span.end_time)
        except Exception:
            log.warning("routetrace: could not mirror OpenTelemetry span", exc_info=True)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _occupy_free_slot() -> bool:
    """Serve the OpenTelemetry API without using up the app's one ``set_tracer_provider``.

    ``set_tracer_provider`` may succeed once per process; taking that turn would make the
    app's own later call fail. So the bridge is put in the slot directly, leaving the turn to
    the app (private names of ``opentelemetry-api``: anything unexpected and the public call
    is used).
    """
    once = getattr(otel_trace, "_TRACER_PROVIDER_SET_ONCE", None)
    if (
        getattr(otel_trace, "_TRACER_PROVIDER", False) is None
        and once is not None
        and getattr(once, "_done", None) is False
    ):
        otel_trace._TRACER_PROVIDER = _provider  # type: ignore[attr-defined]
        return True
    otel_trace.set_tracer_provider(_provider)
    return otel_trace.get_tracer_provider() is _provider


def install() -> bool:
    """Serve the OpenTelemetry API if the app set no provider, or join the SDK one it set.

    Returns True when OpenTelemetry spans reach routetrace's traces.
    """
    global seen_provider
    with _install_lock:
        current = seen_provider = otel_trace.get_tracer_provider()
        if current is _provider:
            return True
        if isinstance(current, otel_trace.ProxyTracerProvider):
            taken = _occupy_free_slot()
            seen_provider = otel_trace.get_tracer_provider()
            return taken
        if any(joined is current for joined in _joined):
            return True
        add = getattr(current, "add_span_processor", None)
        if add is None:
            log.debug("routetrace: the application's TracerProvider %r takes no span "
                      "processor; its spans stay out of routetrace's traces", current)
            return False
        add(_MirrorProcessor())
        _joined.append(current)
        return True
