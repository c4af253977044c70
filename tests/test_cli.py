"""The ``routetrace`` command against a store each test fills itself."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import routetrace
from routetrace.cli import Progress, main, parse_age
from routetrace.tracing.destination import Experiment
from routetrace.tracing.spool import spool_batch, spooled_files
from tests.conftest import traces_of
from tests.viewer._data import fill_store, make_trace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("routetrace: ")
    return lines[0]


@pytest.fixture
def filled(store):
    return fill_store(store)


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


# -- traces list ------------------------------------------------------------------------------
def test_list_is_a_table_newest_first_that_fits_the_terminal(capsys, filled, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(capsys, "traces", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["trace", "time", "experiment", "name", "status", "duration",
                                "request"]
    assert all(len(line) <= 80 for line in lines), out
    assert lines[1].startswith(filled.hostile[:11])
    assert lines[2].startswith(filled.chat_error[:11])
    assert "ERROR" in lines[2]
    assert lines[3].startswith(filled.math[:11])
    assert "120.0 ms" in lines[3]
    assert len(lines) == 1 + 8


def test_list_json_by_experiment_and_filter(capsys, filled):
    code, out, _ = run(capsys, "traces", "list", "--experiment", "chat-agent", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["trace_id"] for r in rows] == [filled.chat_error]
    assert rows[0]["state"] == "ERROR"
    code, out, _ = run(capsys, "traces", "list", "--json", "--filter",
                       "trace.status = 'OK' AND trace.execution_time_ms > 100")
    assert [r["trace_id"] for r in json.loads(out)] == [filled.math]


def test_list_limit(capsys, filled):
    code, out, _ = run(capsys, "traces", "list", "--limit", "2")
    assert code == 0
    assert len(out.splitlines()) == 1 + 2 + 1  # header, rows, the "first 2" hint


def test_bad_filter_is_one_line_and_exit_1(capsys, filled):
    code, _out, err = run(capsys, "traces", "list", "--filter", "trace.bogus = 1")
    assert code == 1
    assert "trace.bogus" in one_line_error(err)


def test_unknown_experiment(capsys, filled):
    code, _, err = run(capsys, "traces", "list", "--experiment", "nope")
    assert code == 1
    assert "experiments list" in one_line_error(err)


def test_empty_store_is_not_created_by_reading(capsys, tmp_path):
    empty = tmp_path / "nothing-here"
    code, _out, err = run(capsys, "--tracking-uri", str(empty), "traces", "list")
    assert code == 0
    assert "no traces yet" in err
    assert not empty.exists()


def test_traces_from_the_library_show_up(capsys):
    with routetrace.start_span("GET /items/{id}",
                               trace_destination=Experiment(name="shop")) as span:
        span.set_inputs({"id": 7})
        with routetrace.start_span("db"):
            pass
    [trace] = traces_of("shop")
    code, out, _ = run(capsys, "traces", "list", "-e", "shop")
    assert code == 0
    assert "GET /items/{id}" in out
    code, out, _ = run(capsys, "traces", "show", trace.info.trace_id)
    assert code == 0
    assert "└─ db" in out


# -- traces show ------------------------------------------------------------------------------
def test_show_draws_the_span_tree_as_a_waterfall(capsys, filled, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run(capsys, "traces", "show", filled.math)
    assert code == 0, err
    lines = out.splitlines()
    rows = [line for line in lines if line.rstrip().endswith("|") and "ms" in line]
    names = [re.split(r"\s{2,}", r.strip())[0] for r in rows[1:]]
    assert names == ["POST /math/{op}", "├─ parse", "└─ compute", "└─ llm"]
    assert [r.split("|")[0].split()[-2:] for r in rows[1:]] == [
        ["120.0", "ms"], ["10.0", "ms"], ["90.0", "ms"], ["60.0", "ms"]]
    bars = [r.split("|")[1] for r in rows[1:]]
    assert bars[0].strip() == bars[0]  # the root spans the whole axis
    assert bars[1].index("█") < bars[2].index("█") < bars[3].index("█")
    assert all(len(line) <= 100 for line in lines)


def test_show_by_prefix_full_and_json(capsys, filled):
    code, out, _ = run(capsys, "traces", "show", filled.math[:11], "--full")
    assert code == 0
    assert '"op": "add"' in out
    assert "attributes:" in out
    code, out, _ = run(capsys, "traces", "show", filled.chat_error, "--json")
    data = json.loads(out)
    assert data["info"]["trace_id"] == filled.chat_error
    assert [s["name"] for s in data["data"]["spans"]] == ["POST /chat/{id}", "agent"]


def test_show_error_spans_and_their_events(capsys, filled):
    code, out, _ = run(capsys, "traces", "show", filled.chat_error)
    assert code == 0
    assert out.count("ERROR") >= 3
    assert "boom" in out


@pytest.mark.parametrize("trace_id", ["tr-" + "0" * 32, "tr-0f0f0f", "not-an-id"])
def test_show_unknown_trace(capsys, filled, trace_id):
    code, _, err = run(capsys, "traces", "show", trace_id)
    assert code == 1
    one_line_error(err)


def test_terminal_escapes_in_trace_data_are_neutralised(capsys, store):
    exp = store.resolve_experiment(Experiment(name="evil"))
    evil = "\x1b]0;pwned\x07\x1b[2J\x9bname"
    trace = make_trace(99, exp.experiment_id, evil, int(time.time() * 1000),
                       [(evil, "UNKNOWN", None, 0, 3, "OK")], request_preview=evil)
    store.write_traces(exp, [trace])
    for argv in (["traces", "list"], ["traces", "show", trace.info.trace_id, "--full"],
                 ["traces", "show", trace.info.trace_id, "--json"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert not set("\x1b\x9b\x07") & set(out), argv


# -- traces delete ---------------------------------------------------------------------------
def _count(experiment: str) -> int:
    return len(routetrace.search_traces(experiment, max_results=1000))


def test_delete_refuses_without_yes_when_stdin_is_not_a_terminal(capsys, filled, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin("y\n", tty=False))
    code, _, err = run(capsys, "traces", "delete", "--experiment", "math-agent")
    assert code == 2
    assert "--yes" in one_line_error(err)
    assert _count("math-agent") == 7


def test_delete_older_than(capsys, filled):
    code, out, err = run(capsys, "traces", "delete", "-e", "math-agent", "--older-than", "1h",
                         "--yes")
    assert code == 0, err
    assert "Deleted 5 trace(s)" in out
    remaining = {t.info.trace_id for t in routetrace.search_traces("math-agent")}
    assert remaining == {filled.math, filled.hostile}
    assert _count("chat-agent") == 1


def test_delete_max_takes_the_oldest(capsys, filled):
    code, _out, _ = run(capsys, "traces", "delete", "-e", "math-agent", "--max", "2", "--yes")
    assert code == 0
    remaining = {t.info.trace_id for t in routetrace.search_traces("math-agent")}
    assert remaining == {filled.math, filled.hostile, *filled.older[:3]}


def test_delete_asks_on_a_terminal(capsys, filled, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin("n\n", tty=True))
    code, _, err = run(capsys, "traces", "delete", "-e", "chat-agent")
    assert code == 1
    assert "Delete 1 trace(s)" in err
    assert "nothing deleted" in err
    assert _count("chat-agent") == 1
    monkeypatch.setattr(sys, "stdin", _Stdin("y\n", tty=True))
    code, _out, _ = run(capsys, "traces", "delete", "-e", "chat-agent")
    assert code == 0
    assert _count("chat-agent") == 0


def test_delete_bad_age_is_a_usage_error(capsys, filled):
    code, _, err = run(capsys, "traces", "delete", "-e", "math-agent", "--older-than", "soon")
    assert code == 2
    assert "7d" in one_line_error(err)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43200),
                                              ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)])
def test_parse_age(text, seconds):
    assert parse_age(text) == seconds


# -- experiments, stats, spool ---------------------------------------------------------------
def test_experiments_list(capsys, filled):
    code, out, _ = run(capsys, "experiments", "list")
    assert code == 0
    rows = {line.split()[1]: line.split()[2:4] for line in out.splitlines()[1:]}
    assert rows["math-agent"] == ["7", "0"]
    assert rows["chat-agent"] == ["1", "1"]
    code, out, _ = run(capsys, "experiments", "list", "--json")
    assert {e["name"] for e in json.loads(out)} >= {"math-agent", "chat-agent"}


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
    from routetrace.tracing.spool import record_export_summary
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
    assert _count("late") == 3
    code, out, _ = run(capsys, "spool", "replay")
    assert "Nothing to replay" in out


# -- routes, push, ui ----------------------------------------------------------------------------
def test_routes_describe_and_explain(capsys, tmp_path):
    config = tmp_path / "routetrace.toml"
    config.write_text('experiment = "web"\nexclude = ["/healthz"]\n\n[[routes]]\n'
                      'path = "/math/{op}"\nmethods = ["POST"]\nexperiment = "math-agent"\n')
    code, out, _ = run(capsys, "routes", "--config", str(config))
    assert code == 0
    assert "/math/{op}" in out
    assert "math-agent" in out
    code, out, _ = run(capsys, "routes", "--config", str(config), "--explain", "/math/add",
                       "--method", "POST")
    assert code == 0
    assert "math-agent" in out
    assert "op='add'" in out
    code, out, _ = run(capsys, "routes", "--config", str(config), "--explain", "/healthz")
    assert "not traced" in out


def test_routes_bad_config_names_file_and_line(capsys, tmp_path):
    config = tmp_path / "routetrace.toml"
    config.write_text('experiment = "web"\nbogus = 1\n')
    code, _, err = run(capsys, "routes", "--config", str(config))
    assert code == 1
    line = one_line_error(err)
    assert f"{config}:2" in line
    assert "bogus" in line


def test_push_between_local_stores(capsys, filled, store, tmp_path):
    target = tmp_path / "other"
    code, out, err = run(capsys, "push", "--from", str(store.uri), "--to", str(target),
                         "--experiment", "math-agent")
    assert code == 0, err
    assert "Pushed 7 trace(s)" in out
    code, out, _ = run(capsys, "--tracking-uri", str(target), "traces", "list", "--json")
    assert len(json.loads(out)) == 7


def test_ui_refuses_a_public_host_without_allow_remote(capsys):
    code, _, err = run(capsys, "ui", "--host", "0.0.0.0")
    assert code == 2
    line = one_line_error(err)
    assert "--allow-remote" in line
    assert "request data" in line


# -- errors and the console script -------------------------------------------------------------
@pytest.mark.parametrize("argv", [["traces", "frob"], [], ["traces", "list", "--limit", "x"],
                                  ["traces", "delete"]])
def test_usage_errors_are_one_line_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    one_line_error(err)


def test_bad_tracking_uri(capsys):
    code, _, err = run(capsys, "--tracking-uri", "gopher://x", "traces", "list")
    assert code == 2
    assert "scheme" in one_line_error(err)


def _script() -> Path:
    script = Path(sys.executable).parent / "routetrace"
    if not script.exists():
        pytest.skip("the routetrace console script is not installed in this environment")
    return script


def test_console_script_reports_a_bad_variable_in_one_line(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path),
           "MLFLOW_TRACE_TIMEOUT_SECONDS": "abc"}
    proc = subprocess.run([str(_script()), "traces", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("routetrace: bad environment: "
                                   "MLFLOW_TRACE_TIMEOUT_SECONDS='abc' is not a number")


def test_console_script_lists(tmp_path, filled, store):
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(store.uri), "COLUMNS": "120"}
    proc = subprocess.run([str(_script()), "traces", "list", "-e", "chat-agent"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "POST /chat/{id}" in proc.stdout


def test_progress_bar_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress("deleting", 10, stream=tty)
    bar.update(5, force=True)
    bar.close(10)
    assert "\rdeleting [" in tty.getvalue()
    assert "10/10" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
    plain = io.StringIO()
    bar = Progress("deleting", 10, stream=plain)
    bar.update(5, force=True)
    bar.close(10)
    assert plain.getvalue() == ""


# -- demo ------------------------------------------------------------------------------------------
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
