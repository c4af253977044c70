"""``LiveTrace``: its spans in start order, the child list made only when needed, release."""

from __future__ import annotations

import threading

from routetrace.core.span import LiveSpan
from routetrace.core.tracer import Tracer


def _root(tracer: Tracer) -> LiveSpan:
    span = tracer.start_root("GET", "CHAIN", None, None, None, None)
    assert isinstance(span, LiveSpan)
    return span


def test_a_root_only_trace_has_no_child_list(tracer: Tracer) -> None:
    root = _root(tracer)
    assert root.trace.children is None  # one object less while the trace waits for export
    assert root.trace.spans == [root]
    root.end()


def test_spans_are_the_root_then_the_children_in_start_order(tracer: Tracer) -> None:
    root = _root(tracer)
    a = tracer.start_span("a", parent=root)
    b = tracer.start_span("b", parent=a)
    c = tracer.start_span("c", parent=root)
    assert root.trace.spans == [root, a, b, c]
    for span in (b, a, c, root):
        span.end()


def test_threads_starting_the_first_children_at_once_lose_none(tracer: Tracer) -> None:
    for _ in range(20):
        root = _root(tracer)
        barrier = threading.Barrier(8)
        started: list[LiveSpan] = []

        def child(root: LiveSpan = root, barrier: threading.Barrier = barrier,
                  started: list[LiveSpan] = started) -> None:
            barrier.wait()
            span = tracer.start_span("child", parent=root)
            assert isinstance(span, LiveSpan)
            started.append(span)

        threads = [threading.Thread(target=child) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(map(id, root.trace.spans[1:])) == sorted(map(id, started))
        assert len(started) == 8
        root.end()


def test_release_drops_the_links_to_the_spans(tracer: Tracer) -> None:
    root = _root(tracer)
    child = tracer.start_span("child", parent=root)
    child._deferred = root._deferred = lambda span: None
    trace = root.trace
    trace.release()
    assert trace.root is None and trace.children is None and trace.spans == []
    assert root._deferred is None and child._deferred is None
