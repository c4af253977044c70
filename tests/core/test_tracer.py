"""The tracer's wiring: its exporter and backends come from above, handed down at import."""

from __future__ import annotations

import subprocess
import sys

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


def test_the_core_and_export_floors_import_without_the_backends():
    """Importing the tracer and the pipeline alone (not the package's root) pulls in nothing
    from the floors above them."""
    code = (
        "import sys, types, pathlib, routetrace as _r\n"
        # drop every routetrace module, then load only core and export from the source tree
        "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('routetrace')]\n"
        "pkg = types.ModuleType('routetrace'); pkg.__path__ = _r.__path__\n"
        "sys.modules['routetrace'] = pkg\n"
        "import routetrace.core.tracer, routetrace.core.fluent, routetrace.export.pipeline\n"
        "print(sorted({m.split('.')[1] for m in sys.modules"
        " if m.startswith('routetrace.')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "['core', 'export']"
