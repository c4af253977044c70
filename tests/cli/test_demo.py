"""``routetrace demo`` runs the example app and summarises its traces."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.cli.conftest import EXAMPLES, console_script, run


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo(capsys, tmp_path):
    if not (EXAMPLES / "fastapi_app.py").exists() or not (EXAMPLES / "routetrace.toml").exists():
        pytest.skip("examples/fastapi_app.py and examples/routetrace.toml are not there yet")
    store = tmp_path / "demo-store"
    started = time.monotonic()
    code, out, err = run(capsys, "--tracking-uri", str(store), "demo")
    assert code == 0, out + err
    assert time.monotonic() - started < 60
    assert "math-agent" in out
    assert "chat-agent" in out
    assert f"--tracking-uri {store} ui" in out
    code, out, _ = run(capsys, "--tracking-uri", str(store), "traces", "list", "--json",
                       "--limit", "100")
    rows = json.loads(out)
    assert any(r["state"] == "ERROR" for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_ends_with_a_command_that_runs_without_the_venv_on_path(tmp_path):
    """As after `make demo`: the console script is in .venv/bin, which is not on PATH."""
    if not (EXAMPLES / "fastapi_app.py").exists():
        pytest.skip("examples/fastapi_app.py is not there")
    script = console_script()
    env = {**os.environ, "PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": str(tmp_path / "s")}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([str(script), "demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    command = last.split("or:", 1)[1].split()
    assert command[-2:] == ["traces", "list"]
    shown = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "POST /math/{op}" in shown.stdout

