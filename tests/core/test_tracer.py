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
