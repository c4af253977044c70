"""A trace while it runs: its spans, where it goes, and the one-time hand-off when it ends.

Finishing is exactly-once: the root span ending, the timeout watchdog and the exit handler
can race, and only the first of them hands the trace to the exporter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from routetrace.core.model import SpanEvent

if TYPE_CHECKING:
    from routetrace.core.destination import Experiment
    from routetrace.core.processors import SpanProcessor
    from routetrace.core.sink import Sink
    from routetrace.core.span import LiveSpan

__all__ = ["LiveTrace", "after_fork_in_child"]

_children_lock = threading.Lock()


def after_fork_in_child() -> None:
    """A fork while another thread held the lock would leave the child's copy locked for ever
    (``routetrace.export.lifecycle`` calls this in every forked child)."""
    global _children_lock
    _children_lock = threading.Lock()


class LiveTrace:
    __slots__ = (
        "_once",
        "aborted",
        "backend",
        "children",
        "deadline_ns",
        "destination",
        "finished",
        "metadata",
        "on_finish",
        "processors",
        "remote_parent_span_id",
        "request_preview",
        "response_preview",
        "root",
        "run_id",
        "seq",
        "tags",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: int,
        destination: Experiment,
        backend: Sink,
        on_finish: Callable[[LiveTrace], None],
        run_id: str | None = None,
        deadline_ns: int | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.destination = destination
        self.backend = backend
        self.on_finish = on_finish
        self.run_id = run_id
        self.deadline_ns = deadline_ns
        self.root: LiveSpan | None = None
        # The spans after the root, in start order; None until the first one starts. Most
        # traces of a web service are the request's root span alone, and a list that is
        # never used is one more object for the garbage collector while the trace waits
        # for the export worker.
        self.children: list[LiveSpan] | None = None
        self.finished = False
        # Popped once by _claim (atomic under the GIL). A bytearray, not a list: it is not
        # tracked by the cyclic garbage collector, one object less per trace to collect.
        self._once = bytearray(1)
        self.aborted: str | None = None
        self.tags: dict[str, str] | None = None
        self.metadata: dict[str, str] | None = None
        self.request_preview: str | None = None
        self.response_preview: str | None = None
        self.remote_parent_span_id: int | None = None
        self.seq = 0
        # The span processors in force when the trace ended, bound by the tracer as it hands
        # the trace off: a later ``configure()`` must not change what applies to it.
        self.processors: tuple[SpanProcessor, ...] = ()

    @property
    def spans(self) -> list[LiveSpan]:
        """Every span, the root first, in start order (a new list)."""
        root = self.root
        if root is None:
            return []
        children = self.children
        return [root, *children] if children else [root]

    def add_child(self, span: LiveSpan) -> None:
        children = self.children
        if children is None:
            with _children_lock:  # two threads starting the first child at once
                children = self.children
                if children is None:
                    children = self.children = []
        children.append(span)

    def end_span(self, span: LiveSpan, end_time_ns: int) -> None:
        """The one place a span ends (``LiveSpan.end`` comes here); the root hands the trace off."""
        if self.finished:
            return
        span.end_time_ns = end_time_ns
        if span is self.root and self._claim():
            self.on_finish(self)

    def _claim(self) -> bool:
        """True for exactly one caller: the root span ending, the watchdog and the exit handler
        can race. ``pop`` is atomic under the GIL, so no lock is taken on the request path."""
        try:
            self._once.pop()
        except IndexError:
            return False
        self.finished = True
        return True

    def abort(self, reason: str, message: str) -> bool:
        """End every open span with ERROR and an event named ``reason``; hand the trace off.

        Returns False when the trace had already finished (nothing to do).
        """
        if not self._claim():
            return False
        self.aborted = reason
        now = time.time_ns()
        for span in self.spans:
            if span.end_time_ns is None:
                span.add_event(SpanEvent(reason, now, {"message": message}))
                span.set_status("ERROR", message)
                span.end_time_ns = now
        self.on_finish(self)
        return True

    def release(self) -> None:
        """Drop the links to the spans once the trace is built for export.

        Spans point at their trace and the trace at its spans, and the middleware's root
        span at its capture and back: reference cycles that only the cyclic garbage collector
        would free, in collections triggered on the request path.
        """
        root = self.root
        if root is not None:
            root._deferred = None
            self.root = None
        children = self.children
        if children:
            for span in children:
                span._deferred = None
        self.children = None

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.tags is None:
            self.tags = {}
        for key, value in tags.items():
            self.tags[str(key)] = str(value)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        if self.metadata is None:
            self.metadata = {}
        for key, value in metadata.items():
            self.metadata[str(key)] = str(value)
