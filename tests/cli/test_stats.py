"""``routetrace stats`` and ``routetrace spool replay``."""

from __future__ import annotations

import json
import time

import routetrace
from routetrace.tracing.destination import Experiment
from routetrace.tracing.spool import spool_batch, spooled_files
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


def test_stats_reports_snapshots_still_to_build(capsys, tracer, monkeypatch):
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)  # no idle-time building
    for i in range(3):
        with routetrace.start_span(f"s{i}"):
            pass
    assert routetrace.flush(timeout=30)
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "traces    3" in out
    assert "3 stored as snapshots" in out
    code, out, _ = run(capsys, "stats", "--json")
    data = json.loads(out)
    assert data["store"]["traces"] == 3
    assert data["store"]["traces_to_build"] == 0  # the first listing built them
    assert data["store"]["traces_failed_to_build"] == 0


def test_stats_reports_traces_that_could_not_be_built(capsys, tracer, monkeypatch):
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)  # no idle-time building
    for name in ("ok", "bad"):
        with routetrace.start_span(name):
            pass
    assert routetrace.flush(timeout=30)
    from routetrace.backends import local

    real = local.build_trace

    def build(live, processors):
        if live.root.name == "bad":
            raise RuntimeError("cannot build this one")
        return real(live, processors)

    monkeypatch.setattr(local, "build_trace", build)
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "lost      1 stored but could not be built" in out
    code, out, _ = run(capsys, "stats", "--json")
    assert json.loads(out)["store"]["traces_failed_to_build"] == 1

