"""``benchmarks.inprocess``: each configuration's CPU per request counts every trace to its
backend's final form, in a process of its own as ``run_all`` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _inprocess(config: str, workdir: Path, n: int = 200, warm: int = 50) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_"))}
    env.update({"BENCH_DIR": str(workdir), "PYTHONPATH": str(REPO),
                "ROUTETRACE_SIGNAL_HANDLERS": "false"})
    out = subprocess.run([sys.executable, "-m", "benchmarks.inprocess", "--config", config,
                          "-n", str(n), "--warm", str(warm)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_the_local_store_is_measured_until_every_trace_is_built(tmp_path: Path) -> None:
    result = _inprocess("routetrace", tmp_path)
    assert result["kept"] == 250  # warm-up and timed requests, all readable
    assert result["build_us"] > 0  # the forcing read is inside the measured CPU
    parts = result["request_us"] + result["export_us"] + result["build_us"]
    assert abs(result["total_us"] - parts) < 1e-6


def test_an_otlp_exporter_is_counted_by_what_the_loopback_sink_received(
        tmp_path: Path) -> None:
    result = _inprocess("routetrace-otlp", tmp_path, n=100, warm=20)
    assert result["kept"] == 120  # every root span decoded from the protobuf it was sent
    assert result["export_us"] > 0


def test_the_floor_costs_only_its_request_path_and_keeps_nothing(tmp_path: Path) -> None:
    result = _inprocess("floor", tmp_path)
    assert result["kept"] is None  # its records go to a bounded deque, nowhere else
    assert result["request_us"] > 0
    assert abs(result["export_us"]) < 1  # no other thread: nothing exported
    parts = result["request_us"] + result["export_us"] + result["build_us"]
    assert abs(result["total_us"] - parts) < 1e-6
