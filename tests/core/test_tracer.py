"""The tracer's wiring: its exporter and backends come from above, handed down at import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from routetrace.core import tracer as tracer_mod
from routetrace.core.settings import Settings
from routetrace.export.pipeline import Pipeline


def test_importing_routetrace_wires_the_export_pipeline_into_the_tracer(tracer):
    assert isinstance(tracer.exporter, Pipeline)
    assert tracer.exporter.tracer is tracer


def test_a_tracer_made_before_anything_is_wired_says_how_to_wire_it(monkeypatch):
    monkeypatch.setattr(tracer_mod, "_wiring", None)
    with pytest.raises(RuntimeError, match=r"install\(\) was not called: import routetrace"):
        tracer_mod.Tracer(Settings())


def test_the_core_traces_into_whatever_exporter_and_backend_it_is_handed():
    """The core alone (no export, no backends imported) with an in-memory exporter: the
    seam the package's root wires the real pipeline and backend registry into."""
    code = textwrap.dedent("""
        import sys, types, routetrace as _r
        # forget the package, then load only the core from the source tree
        [sys.modules.pop(m) for m in list(sys.modules) if m.startswith("routetrace")]
        package = types.ModuleType("routetrace"); package.__path__ = _r.__path__
        sys.modules["routetrace"] = package
        from routetrace.core import fluent, tracer
        from routetrace.core.settings import Settings

        class Memory:
            def __init__(self, owner): self.names = []
            def activate(self): pass
            def put(self, trace): self.names.append(trace.root.name); return True
            def flush(self, timeout=None): return True
            def stop(self): pass

        class Store:
            uri, max_concurrency, spool_dir = "memory", 1, None

        tracer.install(exporter_factory=Memory, backend_factory=lambda uri, s: Store(),
                       clear_backends=lambda: None)
        current = tracer.reset(Settings(otel_bridge=False))
        with fluent.start_span("handled"):
            pass
        print(current.exporter.names)
        print(sorted({m.split(".")[1] for m in sys.modules if m.startswith("routetrace.")}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[:2] == ["['handled']", "['core']"]


def test_a_trace_id_starts_with_its_start_time_in_milliseconds(tracer):
    start = 1_764_000_000_123_456_789
    span = tracer.start_span("t", parent=None, start_time_ns=start)
    assert span.trace.trace_id >> 80 == start // 1_000_000
    span.end()


def test_later_traces_have_larger_ids_so_a_store_appends_them(tracer):
    """A store indexes traces by id: random ids put every write all over the index."""
    ids = []
    start = 1_764_000_000_000_000_000
    for k in range(50):
        span = tracer.start_span("t", parent=None, start_time_ns=start + k * 1_000_000)
        ids.append(f"{span.trace.trace_id:032x}")
        span.end()
    assert ids == sorted(ids)
    assert len(set(ids)) == 50


def test_the_right_most_80_bits_of_trace_ids_are_random(tracer):
    """W3C Trace Context: samplers read the randomness on the right."""
    start = 1_764_000_000_000_000_000
    low = []
    for _ in range(400):
        span = tracer.start_span("t", parent=None, start_time_ns=start)
        low.append(span.trace.trace_id & ((1 << 80) - 1))
        span.end()
    assert len(set(low)) == 400
    mean_bits = sum(bin(x).count("1") for x in low) / len(low)
    assert 37 < mean_bits < 43  # 40 expected of 80 random bits


def test_a_trace_continued_from_a_traceparent_keeps_the_callers_id(tracer):
    remote = 0x0AF7651916CD43DD8448EB211C80319C
    span = tracer.start_root("t", "UNKNOWN", None, None, None, (remote, 0xB7AD6B7169203331))
    assert span.trace.trace_id == remote
    span.end()


def test_a_hand_given_start_before_1970_still_makes_a_valid_id():
    tid = tracer_mod.new_trace_id(-5_000_000)
    assert 0 < tid < 1 << 128
