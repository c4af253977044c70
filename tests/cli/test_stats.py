"""``routetrace stats`` and ``routetrace spool replay``."""

from __future__ import annotations

import json
import time

import routetrace
from routetrace.core.destination import Experiment
from routetrace.export.spool import spool_batch, spooled_files
from tests.cli.conftest import run, trace_count
from tests.viewer._data import make_trace


def test_stats_counts_store_spool_and_experiments(capsys, filled, store, tracer):
    exp = store.resolve_experiment(Experiment(name="math-agent"))
    extra = make_trace(50, exp.experiment_id, "late", int(time.time() * 1000),
                       [("late", "UNKNOWN", None, 0, 1, "OK")])
    spool_batch(tracer.spool_dir(), store.uri, Experiment(name="math-agent"), [extra])
    code, out, _ = run(capsys, "stats", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["store"]["traces"] == 8
    assert data["spool"]["files"] == 1
    assert data["spool"]["traces"] == 1
    assert {e["name"]: e["traces"] for e in data["experiments"]} == {
        "math-agent": 7, "chat-agent": 1}
    code, out, _ = run(capsys, "stats")
    assert "1 file(s), 1 trace(s)" in out
    assert "spool replay" in out


def test_stats_shows_spool_and_counts_while_the_mlflow_server_is_down(capsys, reset_tracer,
                                                                      tmp_path):
    from routetrace.export.spool import record_export_summary
    from tests.fixtures.servers import free_port

    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tracer = reset_tracer(MLFLOW_TRACKING_URI=down, ROUTETRACE_SPOOL_DIR=str(tmp_path / "spool"))
    trace = make_trace(1, "1", "t", int(time.time() * 1000), [("t", "UNKNOWN", None, 0, 1, "OK")])
    spool_batch(tracer.spool_dir(), down, Experiment(name="chat-agent"), [trace])
    record_export_summary(tracer.spool_dir(), {"spooled": 1, "dropped": 3}, "1-2")
    code, out, err = run(capsys, "stats", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert "cannot reach the MLflow server" in data["store"]["error"]
    assert (data["spool"]["traces"], data["export"]["dropped"]) == (1, 3)
    code, out, err = run(capsys, "stats")
    assert code == 0, err
    assert "1 file(s), 1 trace(s)" in out and "3 dropped" in out
    assert "unreadable" in out


def test_spool_replay(capsys, store, tracer):
    exp = store.resolve_experiment(Experiment(name="late"))
    traces = [make_trace(60 + i, exp.experiment_id, "late", int(time.time() * 1000),
                         [("late", "UNKNOWN", None, 0, 1, "OK")]) for i in range(3)]
    spool_batch(tracer.spool_dir(), store.uri, Experiment(name="late"), traces[:2])
    spool_batch(tracer.spool_dir(), store.uri, Experiment(name="late"), traces[2:])
    code, out, err = run(capsys, "spool", "replay")
    assert code == 0, err
    assert "Replayed 3 trace(s) from 2 file(s)" in out
    assert spooled_files(tracer.spool_dir()) == []
    assert trace_count("late") == 3
    code, out, _ = run(capsys, "spool", "replay")
    assert "Nothing to replay" in out


def test_stats_reports_the_traces_the_store_holds_with_nothing_left_to_build(capsys, tracer):
    for i in range(3):
        with routetrace.start_span(f"s{i}"):
            pass
    assert routetrace.flush(timeout=30)
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "traces    3" in out
    assert "snapshot" not in out and "built" not in out
    code, out, _ = run(capsys, "stats", "--json")
    store = json.loads(out)["store"]
    assert store["traces"] == 3
    assert not [k for k in store if "build" in k]

