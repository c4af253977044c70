"""``benchmarks.run_all``'s command line: a mistyped part is an error, not an empty run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run_all

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_part_is_refused_with_the_parts_it_knows() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--parts", "http,htp"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--parts: unknown 'htp'; choose from inprocess, http, httptools, export" in out.stderr
    assert out.stdout == ""  # nothing ran


def test_an_unknown_configuration_is_refused_with_the_ones_it_knows() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--configs", "bare,dd"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--configs: unknown 'dd'; choose from bare, floor, routetrace," in out.stderr
    assert out.stdout == ""


# -- a quick run: the floor beside bare and routetrace, over HTTP split by thread ------------
QUICK_CONFIGS = ("bare", "floor", "routetrace")
HTTP_PARTS = ("http", "httptools")


@pytest.fixture(scope="module")
def quick_run() -> dict[str, Any]:
    """``run_all --quick --parts inprocess,http,httptools --configs bare,floor,routetrace``,
    its results and the tables it prints (each configuration in its own processes, real
    uvicorn servers)."""
    results = run_all.run(quick=True, parts={"inprocess", *HTTP_PARTS}, configs=QUICK_CONFIGS)
    return {"results": results, "tables": run_all.tables(results)}


def _ran(quick_run: dict[str, Any], part: str) -> dict[str, Any]:
    rows = quick_run["results"][part]
    if not rows:
        pytest.skip(f"{part} did not run here (httptools not installed: the dev extra has it)")
    return rows


@pytest.mark.parametrize("part", ["inprocess", *HTTP_PARTS])
def test_the_floor_is_measured_and_shown_right_below_bare(
        quick_run: dict[str, Any], part: str) -> None:
    assert tuple(_ran(quick_run, part)) == QUICK_CONFIGS
    header, _, *rows = [[cell.strip() for cell in ln.strip().strip("|").split("|")]
                        for ln in quick_run["tables"][part].splitlines() if ln.startswith("|")]
    assert [row[0] for row in rows] == [
        "bare Starlette", "floor: minimal root-span middleware, no export",
        "routetrace, local store"]
    kept = next(i for i, name in enumerate(header) if name.startswith("traces kept"))
    assert rows[1][kept] == "–"
    assert rows[2][kept] != "–"


@pytest.mark.parametrize("part", ["inprocess", *HTTP_PARTS])
def test_the_floor_keeps_no_trace_and_routetrace_keeps_every_one(
        quick_run: dict[str, Any], part: str) -> None:
    rows = _ran(quick_run, part)
    assert rows["floor"]["kept"] is None
    sent = rows["routetrace"]["requests" if part == "inprocess" else "sent"]
    assert rows["routetrace"]["kept"] >= sent > 0


@pytest.mark.parametrize("part", HTTP_PARTS)
def test_over_http_the_event_loop_and_the_other_threads_add_up_to_the_server_cpu(
        quick_run: dict[str, Any], part: str) -> None:
    for config, v in _ran(quick_run, part).items():
        # Each thread's ticks and the process's are truncated apart: a tick per thread and
        # read, in µs a request.
        tick_us = v["clock_tick_s"] / v["requests"] * 1e6
        slack = (2 * len(v["server_threads_us"]) + 2) * tick_us
        for phase in ("run", "final"):
            loop, other = v[f"loop_cpu_{phase}_us"], v[f"other_cpu_{phase}_us"]
            assert loop >= 0 and other >= 0, (config, phase)
            assert abs(loop + other - v[f"server_cpu_{phase}_us"]) <= slack, (config, phase, v)
        total = v["server_cpu_run_us"] + v["server_cpu_final_us"]
        assert abs(total - v["server_cpu_us"]) < 1e-6
        assert v["loop_cpu_run_us"] > 0  # the event loop served every request
        assert abs(sum(v["server_threads_us"].values()) - v["loop_cpu_run_us"]
                   - v["loop_cpu_final_us"] - v["other_cpu_run_us"]
                   - v["other_cpu_final_us"]) < 1e-6


@pytest.mark.parametrize("part", HTTP_PARTS)
def test_routetrace_s_export_worker_is_counted_as_another_thread_and_the_floor_has_none(
        quick_run: dict[str, Any], part: str) -> None:
    rows = _ran(quick_run, part)
    tick_us = rows["floor"]["clock_tick_s"] / rows["floor"]["requests"] * 1e6
    assert rows["floor"]["other_cpu_run_us"] <= tick_us  # nothing but the loop works
    assert rows["routetrace"]["other_cpu_run_us"] > tick_us  # the export worker's build
    table = quick_run["tables"][part]
    assert "| event loop µs/request (run + final) | other threads µs/request (run + final) |" \
        in table
