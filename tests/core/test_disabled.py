"""MLFLOW_TRACING_ENABLED=false: every API is a cheap no-op and no thread starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import routetrace


def test_disabled_process_starts_no_thread_and_writes_nothing(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio, threading, routetrace

        @routetrace.trace
        def f(x):
            return x

        @routetrace.trace
        async def g(x):
            return x

        @routetrace.trace
        def gen():
            yield 1

        assert f(1) == 1 and asyncio.run(g(2)) == 2 and list(gen()) == [1]
        with routetrace.start_span("s") as span:
            span.set_inputs({"a": 1}); span.set_attribute("k", "v"); span.end()
            assert routetrace.get_current_active_span() is None
        routetrace.update_current_trace(tags={"a": "b"})
        assert routetrace.flush(1)
        assert not routetrace.is_enabled()
        names = sorted(t.name for t in threading.enumerate())
        assert names == ["MainThread"], names
        print("ok")
        """
    )
    store = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={"MLFLOW_TRACING_ENABLED": "false", "MLFLOW_TRACKING_URI": str(store),
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert not store.exists()  # not even the store directory was created


def test_disable_and_enable_at_runtime(tracer):
    routetrace.disable()
    assert not routetrace.is_enabled()
    with routetrace.start_span("off") as span:
        assert span.trace_id is None
    routetrace.enable()
    with routetrace.start_span("on"):
        pass
    routetrace.flush()
    assert [t.root_span.name for t in routetrace.search_traces(return_type="list")] == ["on"]


def test_no_thread_until_the_first_trace(tracer):
    import threading

    before = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("routetrace") for n in before)
    with routetrace.start_span("x"):
        pass
    routetrace.flush()
    names = {t.name for t in threading.enumerate()}
    assert "routetrace-export-0" in names
    assert "routetrace-watchdog" not in names  # no timeout configured: no watchdog
