"""``Tracer.start_root`` (the middleware's entry point) starts the same root span as
``start_span(parent=None, ...)``; a trace hands itself off exactly once."""

from __future__ import annotations

from typing import Any

import pytest

import routetrace
from routetrace.core.destination import Experiment, context_destination
from routetrace.core.span import NO_OP_SPAN, LiveSpan
from routetrace.core.tracer import Tracer

ROUTE = Experiment(name="route-default")
RULE = Experiment(name="rule")


def _both(tracer: Tracer, **kw: Any) -> tuple[LiveSpan, LiveSpan]:
    destination = kw.pop("destination", None)
    a = tracer.start_root("GET", "CHAIN", destination, kw.get("route_default"),
                          kw.get("timeout_seconds"), kw.get("remote_parent"))
    b = tracer.start_span("GET", "CHAIN", parent=None, **kw)
    assert isinstance(a, LiveSpan) and isinstance(b, LiveSpan)
    return a, b


def _facts(span: LiveSpan) -> tuple:
    trace = span.trace
    return (span.name, span.span_type, span.parent_span_id, trace.root is span,
            trace.spans == [span], trace.destination, trace.run_id,
            trace.remote_parent_span_id, trace.deadline_ns is not None, trace.finished,
            trace.on_finish)


@pytest.mark.parametrize("kw", [
    {},
    {"route_default": ROUTE},
    {"timeout_seconds": 5.0},
    {"remote_parent": (0xABC, 0xDEF)},
])
def test_start_root_is_start_span_without_a_parent(tracer: Tracer, kw: dict) -> None:
    a, b = _both(tracer, **kw)
    assert _facts(a) == _facts(b)
    assert a.trace in tracer.live and b.trace in tracer.live
    if "remote_parent" in kw:
        assert a.trace.trace_id == b.trace.trace_id == 0xABC
    else:
        assert a.trace.trace_id != b.trace.trace_id
    a.end()
    b.end()
    assert tracer.live == set()


def test_start_root_takes_the_rule_experiment_and_else_the_context(tracer: Tracer) -> None:
    token = context_destination.set(RULE)
    try:
        a, b = _both(tracer, route_default=ROUTE, destination=RULE)
        assert a.trace.destination == b.trace.destination == RULE
        c = tracer.start_root("GET", "CHAIN", None, ROUTE, None, None)
        assert c.trace.destination == RULE  # the context's, as start_span would
    finally:
        context_destination.reset(token)
    for span in (a, b, c):
        span.end()


def test_start_root_carries_the_active_run(tracer: Tracer) -> None:
    with routetrace.start_run() as run:
        a, b = _both(tracer)
    assert a.trace.run_id == b.trace.run_id == run.info.run_id
    a.end()
    b.end()


def test_start_root_is_a_no_op_when_disabled(tracer: Tracer) -> None:
    tracer.enabled = False
    assert tracer.start_root("GET", "CHAIN", None, None, None, None) is NO_OP_SPAN


def test_a_trace_is_handed_off_once_whoever_ends_it(tracer: Tracer) -> None:
    handed: list[Any] = []
    span = tracer.start_root("GET", "CHAIN", None, None, None, None)
    trace = span.trace
    trace.on_finish = handed.append
    trace.end_span(span, 1)
    trace.end_span(span, 2)
    assert trace.abort("exit", "late") is False
    assert trace._claim() is False
    assert handed == [trace]
    assert span.end_time_ns == 1

    other = tracer.start_root("GET", "CHAIN", None, None, None, None)
    other.trace.on_finish = handed.append
    assert other.trace.abort("exit", "aborted first") is True
    other.end()
    assert handed == [trace, other.trace]
    tracer.live.clear()
