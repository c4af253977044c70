"""Span processors run on every span before export; one that raises is skipped."""

from __future__ import annotations

import threading

import pytest

import routetrace
from tests.conftest import traces_of


def test_processors_mutate_every_span_in_order():
    calls = []

    def mask(span):
        calls.append(("mask", span.name))
        inputs = span.inputs
        if isinstance(inputs, dict) and "password" in inputs:
            span.set_inputs({**inputs, "password": "***"})

    def tag(span):
        calls.append(("tag", span.name))
        span.set_attribute("env", "test")

    routetrace.configure(span_processors=[mask, tag])

    @routetrace.trace
    def login(user, password):
        return "ok"

    with routetrace.start_span("root"):
        login("u", "hunter2")
    (trace,) = traces_of()
    spans = {s.name: s for s in trace.data.spans}
    assert spans["login"].inputs == {"user": "u", "password": "***"}
    assert all(s.attributes["env"] == "test" for s in trace.data.spans)
    assert sorted(calls) == sorted(
        [("mask", "root"), ("tag", "root"), ("mask", "login"), ("tag", "login")]
    )
    assert "hunter2" not in trace.to_json()


def test_a_raising_processor_is_logged_skipped_and_the_rest_still_run(caplog):
    def broken(span):
        raise RuntimeError("processor bug")

    def good(span):
        span.set_attribute("good", True)

    routetrace.configure(span_processors=[broken, good])
    for _ in range(3):
        with routetrace.start_span("root"):
            pass
    traces = traces_of()
    assert len(traces) == 3
    assert all(t.root_span.attributes == {"good": True} for t in traces)
    warnings = [r for r in caplog.records if "span processor" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per span
    assert routetrace.get_export_stats()["processor_errors"] == 3


def test_processors_must_be_callables():
    with pytest.raises(TypeError, match="callables"):
        routetrace.configure(span_processors=["not callable"])


def test_the_processors_in_force_when_a_trace_ends_are_the_ones_applied_to_it():
    # Hold the export worker inside the first trace's processors, so the second trace is
    # still queued when the processors are reset (as a test or a request-scoped setup does).
    entered, hold = threading.Event(), threading.Event()

    def hold_first(span):
        if span.name == "first":
            entered.set()
            hold.wait(10)

    def mask(span):
        if isinstance(span.inputs, dict) and "password" in span.inputs:
            span.set_inputs({**span.inputs, "password": "***"})

    routetrace.configure(span_processors=[hold_first, mask])
    with routetrace.start_span("first"):
        pass
    assert entered.wait(10)
    with routetrace.start_span("login") as span:
        span.set_inputs({"user": "u", "password": "hunter2"})
    routetrace.configure(span_processors=[])
    hold.set()
    traces = {t.root_span.name: t for t in traces_of()}
    assert traces["login"].root_span.inputs == {"user": "u", "password": "***"}
    assert "hunter2" not in traces["login"].to_json()
