"""The process-wide tracing state and the span-start hot path.

One ``Tracer`` per process holds the settings, the enabled flag, span processors, the global
destination, the backend, the set of live traces (for the watchdog and exit), and the
exporter. Nothing here starts a thread until a trace actually needs one.

The exporter and the backends live above the core: the package's root hands their factories
to :func:`install` when it is imported, and the tracer only knows them through the protocols
of :mod:`routetrace.core.sink`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace

from routetrace.core import otel_bridge
from routetrace.core.destination import (
    DEFAULT_EXPERIMENT,
    Experiment,
    context_destination,
)
from routetrace.core.live_trace import LiveTrace
from routetrace.core.model import format_trace_id
from routetrace.core.processors import SpanProcessor
from routetrace.core.runs import _active_run
from routetrace.core.settings import Settings, load_settings
from routetrace.core.span import NO_OP_SPAN, LiveSpan, NoOpSpan

if TYPE_CHECKING:
    from pathlib import Path

    from routetrace.core.exporter import Exporter
    from routetrace.core.sink import Sink

__all__ = [
    "PARENT_TRACE_KEY",
    "Tracer",
    "Wiring",
    "after_fork_in_child",
    "get_tracer",
    "install",
    "new_trace_id",
    "peek_tracer",
    "reset",
]

log = logging.getLogger("routetrace")

# Ids come from a private generator: an app calling ``random.seed()`` (reproducible sampling,
# ``transformers.set_seed``) must not make its requests' trace ids repeat and merge.
_ids = random.Random()


def new_trace_id(start_time_ns: int) -> int:
    """A 128-bit trace id: the start's Unix milliseconds in the left 48 bits, 80 random bits.

    Stores index traces by id; random ids land all over the index, so every write touches
    pages across the whole file and its cost grows with the store. Ids that grow with time
    are appended instead. W3C Trace Context asks for the randomness in the right-most part,
    where samplers read it (AWS X-Ray's ids put the time first in the same way).
    """
    millis = (start_time_ns // 1_000_000) & 0xFFFF_FFFF_FFFF  # a start given by hand may be odd
    return (millis << 80) | _ids.getrandbits(80) or 1
_tracer: Tracer | None = None
# Trace metadata of a trace started by work that outlived its request (a background task):
# the request's trace id, which is where that work came from.
PARENT_TRACE_KEY = "routetrace.parentTraceId"
_tracer_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Wiring:
    """The parts above the core a tracer uses, handed down by the package's root."""

    exporter_factory: Callable[[Tracer], Exporter]
    backend_factory: Callable[[str | None, Settings], Sink]
    clear_backends: Callable[[], None]


_wiring: Wiring | None = None


def install(*, exporter_factory: Callable[[Tracer], Exporter],
            backend_factory: Callable[[str | None, Settings], Sink],
            clear_backends: Callable[[], None]) -> None:
    """Give the tracers their exporter and backends (``routetrace/__init__.py`` does, on
    import; this only stores the callables: nothing starts)."""
    global _wiring
    _wiring = Wiring(exporter_factory, backend_factory, clear_backends)


def _wired() -> Wiring:
    if _wiring is None:
        raise RuntimeError("routetrace.core.tracer.install() was not called: import routetrace "
                           "(the package wires the exporter and the backends in)")
    return _wiring


def after_fork_in_child() -> None:
    """A forked child: its own id sequence (forked workers must not repeat each other's ids),
    a new lock (another thread may have held the parent's at the fork), and a tracer that
    starts afresh. ``routetrace.export.lifecycle`` calls this in every forked child."""
    global _tracer_lock
    _ids.seed()
    _tracer_lock = threading.Lock()
    if _tracer is not None:
        _tracer.after_fork_in_child()


class _Current:
    """Sentinel: take the parent from the current context."""


CURRENT = _Current()


class Tracer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.tracing_enabled
        self.async_logging = settings.async_logging
        self.processors: tuple[SpanProcessor, ...] = ()
        self.global_destination: Experiment | None = None
        # The route table's default experiment, recorded by the first middleware to trace a
        # request: a trace started outside any request (a thread that was not handed the
        # context) goes there rather than to ``Default``.
        self.table_default: Experiment | None = None
        if settings.experiment_id:
            self.default_destination = Experiment(experiment_id=settings.experiment_id)
        elif settings.experiment_name:
            self.default_destination = Experiment(name=settings.experiment_name)
        else:
            self.default_destination = DEFAULT_EXPERIMENT
        self.tracking_uri = settings.tracking_uri
        self.timeout_ns = (
            int(settings.trace_timeout_seconds * 1e9) if settings.trace_timeout_seconds else None
        )
        self._backend: Sink | None = None
        self.live: set[LiveTrace] = set()
        self.exporter = _wired().exporter_factory(self)
        self._warned_nonroot_destination = False
        self._lock = threading.Lock()
        self._activated = False
        self._otel_bridge = self.enabled and settings.otel_bridge
        # Every trace's ``on_finish``: one bound method, not a new one (a new object for the
        # cyclic garbage collector to count and traverse) per trace.
        self._on_finish = self._finish

    # -- components -------------------------------------------------------------------
    @property
    def backend(self) -> Sink:
        backend = self._backend
        if backend is None:
            backend = self._backend = _wired().backend_factory(self.tracking_uri, self.settings)
        return backend

    def set_tracking_uri(self, uri: str | None) -> None:
        backend = _wired().backend_factory(uri, self.settings)  # validates; raises on a bad URI
        self.tracking_uri = uri
        self._backend = backend

    def spool_dir(self) -> Path:
        from pathlib import Path

        if self.settings.spool_dir:
            return Path(self.settings.spool_dir)
        return self.backend.spool_dir

    def _activate(self) -> None:
        """First trace of the process: exit hooks, OpenTelemetry; threads start later, on demand."""
        with self._lock:
            if self._activated:
                return
            self._activated = True
        self.exporter.activate()
        if self._otel_bridge:
            otel_bridge.install()

    # -- destinations -------------------------------------------------------------------
    def resolve_destination(
        self, trace_destination: Experiment | None = None, route_default: Experiment | None = None
    ) -> Experiment:
        return (
            trace_destination
            or context_destination.get()
            or self.global_destination
            or route_default
            or self.table_default
            or self.default_destination
        )

    # -- the hot path ---------------------------------------------------------------------
    def start_span(
        self,
        name: str,
        span_type: str = "UNKNOWN",
        *,
        parent: Any = CURRENT,
        trace_destination: Experiment | None = None,
        route_default: Experiment | None = None,
        timeout_seconds: float | None = None,
        remote_parent: tuple[int, int] | None = None,
        start_time_ns: int | None = None,
    ) -> LiveSpan | NoOpSpan:
        """Start a span under ``parent`` (default: the current span), or a new trace."""
        if not self.enabled:
            return NO_OP_SPAN
        if parent is CURRENT:
            parent = otel_trace.get_current_span()
            if parent.__class__ is not LiveSpan:
                parent = otel_bridge.live_parent(parent)
        start = start_time_ns or time.time_ns()
        if parent is not None:
            trace = parent.trace
            if trace.finished:
                if trace.aborted is not None:
                    return NO_OP_SPAN  # ended by the watchdog or at exit: no more spans
                return self._start_follow_up(name, span_type, trace, trace_destination, start)
            if trace_destination is not None and not self._warned_nonroot_destination:
                self._warned_nonroot_destination = True
                log.warning("routetrace: trace_destination is only used on a root span; "
                            "ignored on %r (warned once)", name)
            span = LiveSpan(trace, _ids.getrandbits(64) or 1, parent.span_id_int, name, span_type,
                            start)
            trace.add_child(span)
            return span
        return self.start_root(name, span_type, trace_destination, route_default,
                               timeout_seconds, remote_parent, start)

    def _start_follow_up(self, name: str, span_type: str, ended: LiveTrace,
                         destination: Experiment | None, start: int) -> LiveSpan | NoOpSpan:
        """A span whose parent's trace has ended: work that outlives its request (a
        background task after the response). It gets its own trace, in the ended trace's
        experiment, with that trace's id under ``PARENT_TRACE_KEY``."""
        span = self.start_root(name, span_type, destination or ended.destination, None, None,
                               None, start)
        if span.__class__ is LiveSpan:
            span.trace.set_metadata({PARENT_TRACE_KEY: format_trace_id(ended.trace_id)})
        return span

    def start_root(
        self,
        name: str,
        span_type: str,
        destination: Experiment | None,
        route_default: Experiment | None,
        timeout_seconds: float | None,
        remote_parent: tuple[int, int] | None,
        start_time_ns: int | None = None,
    ) -> LiveSpan | NoOpSpan:
        """A new trace and its root span: ``start_span(..., parent=None)``, and the
        middleware's entry point (positional arguments, no parent lookup: the request path
        calls it once per request).

        ``destination`` is the trace's own destination (for the middleware, the rule's
        experiment, which it has also set as the context destination), or None to look the
        context up.
        """
        if not self.enabled:
            return NO_OP_SPAN
        if not self._activated:
            self._activate()
        if self._otel_bridge and otel_trace.get_tracer_provider() is not otel_bridge.seen_provider:
            otel_bridge.install()  # the app set its provider since: join it
        start = start_time_ns or time.time_ns()
        destination = self.resolve_destination(destination, route_default)
        timeout_ns = int(timeout_seconds * 1e9) if timeout_seconds else self.timeout_ns
        run = _active_run.get()
        trace = LiveTrace(remote_parent[0] if remote_parent else new_trace_id(start),
                          destination, self._backend or self.backend, self._on_finish,
                          None if run is None else run.info.run_id,
                          start + timeout_ns if timeout_ns else None)
        if remote_parent:
            trace.remote_parent_span_id = remote_parent[1]
        span = LiveSpan(trace, _ids.getrandbits(64) or 1, None, name, span_type, start)
        trace.root = span
        self.live.add(trace)
        if timeout_ns:
            self.exporter.watch()
        return span

    def _finish(self, trace: LiveTrace) -> None:
        """The trace ended (or was aborted): hand it off. Never raises into the caller.

        It leaves ``live`` only once it is queued, so a trace is always either live or
        queued: shutdown and ``flush()`` never miss one in between.
        """
        try:
            trace.processors = self.processors
            if self.async_logging:
                self.exporter.put(trace)
            else:
                self.exporter.write_sync(trace)
        except Exception:
            log.exception("routetrace: could not hand off trace %032x", trace.trace_id)
        finally:
            self.live.discard(trace)

    def write_sync(self, trace: LiveTrace) -> None:
        self.exporter.write_sync(trace)

    # -- flush, shutdown, fork --------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        return self.exporter.flush(timeout)

    def hurry(self) -> None:
        self.exporter.hurry()

    def abort_open_traces(self, reason: str) -> int:
        count = 0
        for trace in list(self.live):
            if trace.abort(reason, f"trace still open at process {reason}; ended by routetrace"):
                count += 1
        return count

    def shutdown(self, reason: str = "exit") -> bool:
        """End open traces with ERROR, flush within the grace period, spool the rest."""
        aborted = self.abort_open_traces(reason)
        if aborted:
            log.warning("routetrace: %d trace(s) were still open at %s; exported with ERROR",
                        aborted, reason)
        return self.exporter.shutdown(reason)

    def settle(self, reason: str) -> bool:
        """The app stopped serving (ASGI lifespan shutdown): flush within the grace period,
        spool the rest and leave the summary, as ``shutdown`` does, but keep the tracer
        working. uvicorn kills its process by re-raising SIGTERM right after, so no exit hook
        would run; a server that starts the app again finds the tracer as it was."""
        return self.exporter.settle(reason)

    def after_fork_in_child(self) -> None:
        self.live.clear()
        self._lock = threading.Lock()
        self.exporter.after_fork_in_child()
        self._backend = None

    def stats(self) -> dict[str, Any]:
        stats = self.exporter.stats()
        stats["live_traces"] = len(self.live)
        from routetrace.core import processors

        stats["processor_errors"] = processors.errors
        return stats


def get_tracer() -> Tracer:
    """The process's tracer, created on first use. Cheap enough for every request to call."""
    tracer = _tracer
    if tracer is None:
        tracer = _create()
    return tracer


otel_bridge.set_tracer_source(get_tracer)


def peek_tracer() -> Tracer | None:
    return _tracer


def _create() -> Tracer:
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            _tracer = Tracer(load_settings())
        return _tracer


def reset(settings: Settings | None = None) -> Tracer:
    """Replace the process's tracer (tests, or after changing the environment).

    Flushes and stops the old one first.
    """
    global _tracer
    with _tracer_lock:
        old = _tracer
        _tracer = None
    if old is not None:
        old.flush(timeout=2)
        old.exporter.stop()
    _wired().clear_backends()
    with _tracer_lock:
        _tracer = Tracer(settings or load_settings())
    return _tracer
