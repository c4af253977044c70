"""The timeout watchdog: expired traces end with ERROR, exported once; the program goes on."""

from __future__ import annotations

import threading
import time

import routetrace
from tests.conftest import traces_of


def _watchdog_threads():
    return [t for t in threading.enumerate() if t.name == "routetrace-watchdog"]


def test_no_watchdog_thread_without_a_timeout(tracer):
    with routetrace.start_span("x"):
        pass
    routetrace.flush()
    assert _watchdog_threads() == []


def test_stuck_trace_is_aborted_within_timeout_plus_interval_and_exported_once(reset_tracer):
    tracer = reset_tracer(
        MLFLOW_TRACE_TIMEOUT_SECONDS="0.3", MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS="0.1"
    )
    release = threading.Event()
    done = threading.Event()
    results = {}

    def handler():
        with routetrace.start_span("stuck") as root:
            with routetrace.start_span("llm-call") as child:
                release.wait(10)  # the "stuck" work
                child.set_outputs("late")
            # still running after the abort: new children are no-ops, ends are harmless
            with routetrace.start_span("after-abort") as late:
                results["late_is_noop"] = late.trace_id is None
            results["root"] = root
        done.set()

    started = time.monotonic()
    threading.Thread(target=handler).start()
    deadline = time.monotonic() + 5
    while not traces_of() and time.monotonic() < deadline:
        time.sleep(0.02)
    aborted_after = time.monotonic() - started
    assert 0.3 <= aborted_after < 0.3 + 0.1 + 0.5  # timeout + interval + scheduling slack
    release.set()
    assert done.wait(10)
    assert results["late_is_noop"] is True
    (trace,) = traces_of()
    assert trace.info.state == "ERROR"
    assert trace.info.trace_metadata["routetrace.aborted"] == "timeout"
    by_name = {s.name: s for s in trace.data.spans}
    assert set(by_name) == {"stuck", "llm-call"}
    for span in by_name.values():
        assert span.status.status_code == "ERROR"
        assert [e.name for e in span.events] == ["timeout"]
    assert by_name["llm-call"].outputs is None  # set after the abort: not exported
    assert routetrace.flush()
    assert len(traces_of()) == 1  # the late end() did not export it a second time
    assert tracer.stats()["watchdog_aborted"] == 1
    assert _watchdog_threads()


def test_per_trace_timeout_overrides_the_global_one(tracer):
    span = tracer.start_span("short", parent=None, timeout_seconds=0.05)
    time.sleep(0.06)
    assert tracer.exporter.watchdog.check() == 1
    assert tracer.exporter.watchdog.check() == 0  # exactly once
    span.end()
    (trace,) = traces_of()
    assert trace.info.state == "ERROR"


def test_finished_traces_are_not_touched(reset_tracer):
    tracer = reset_tracer(MLFLOW_TRACE_TIMEOUT_SECONDS="0.01")
    with routetrace.start_span("quick"):
        pass
    time.sleep(0.02)
    assert tracer.exporter.watchdog.check() == 0
    assert traces_of()[0].info.state == "OK"
