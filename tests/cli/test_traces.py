"""``routetrace traces list / show / delete`` against a store each test fills itself."""

from __future__ import annotations

import io
import json
import re
import sys
import time

import pytest

import routetrace
from routetrace.core.destination import Experiment
from routetrace.core.model import format_trace_id
from tests.cli.conftest import one_line_error, run, trace_count
from tests.conftest import traces_of
from tests.viewer._data import make_trace


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


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


def test_list_gives_the_name_room_before_the_request_preview(capsys, filled, store,
                                                            monkeypatch):
    name = "GET /api/v1/users/{user_id}"
    exp = store.resolve_experiment(Experiment(name="math-agent"))
    store.write_traces(exp, [make_trace(
        99, exp.experiment_id, name, int(time.time() * 1000),
        [(name, "UNKNOWN", None, 0, 5, "OK")], request_preview='{"page": 1}' * 20)])
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run(capsys, "traces", "list", "-n", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), out
    assert name in lines[1]  # whole, while the preview is cut
    assert '{"page": 1}' * 20 not in lines[1]
    assert lines[1].rstrip().endswith("…")


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


def test_delete_refuses_without_yes_when_stdin_is_not_a_terminal(capsys, filled, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin("y\n", tty=False))
    code, _, err = run(capsys, "traces", "delete", "--experiment", "math-agent")
    assert code == 2
    assert "--yes" in one_line_error(err)
    assert trace_count("math-agent") == 7


def test_delete_older_than(capsys, filled):
    code, out, err = run(capsys, "traces", "delete", "-e", "math-agent", "--older-than", "1h",
                         "--yes")
    assert code == 0, err
    assert "Deleted 5 trace(s)" in out
    found = routetrace.search_traces("math-agent", return_type="list")
    remaining = {t.info.trace_id for t in found}
    assert remaining == {filled.math, filled.hostile}
    assert trace_count("chat-agent") == 1


def test_delete_max_takes_the_oldest(capsys, filled):
    code, _out, _ = run(capsys, "traces", "delete", "-e", "math-agent", "--max", "2", "--yes")
    assert code == 0
    found = routetrace.search_traces("math-agent", return_type="list")
    remaining = {t.info.trace_id for t in found}
    assert remaining == {filled.math, filled.hostile, *filled.older[:3]}


def test_delete_asks_on_a_terminal(capsys, filled, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin("n\n", tty=True))
    code, _, err = run(capsys, "traces", "delete", "-e", "chat-agent")
    assert code == 1
    assert "Delete 1 trace(s)" in err
    assert "nothing deleted" in err
    assert trace_count("chat-agent") == 1
    monkeypatch.setattr(sys, "stdin", _Stdin("y\n", tty=True))
    code, _out, _ = run(capsys, "traces", "delete", "-e", "chat-agent")
    assert code == 0
    assert trace_count("chat-agent") == 0


def test_delete_bad_age_is_a_usage_error(capsys, filled):
    code, _, err = run(capsys, "traces", "delete", "-e", "math-agent", "--older-than", "soon")
    assert code == 2
    assert "7d" in one_line_error(err)



def test_traces_of_one_millisecond_list_with_ids_that_tell_them_apart(capsys, store, tracer,
                                                                      monkeypatch):
    """Trace ids begin with their start time: a fixed cut would print one prefix for all."""
    start = time.time_ns()
    ids = []
    for n in range(6):
        span = tracer.start_span(f"same ms {n}", parent=None, start_time_ns=start)
        ids.append(format_trace_id(span.trace.trace_id))
        span.end(end_time_ns=start + 1000)
    routetrace.flush()
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = run(capsys, "traces", "list")
    assert code == 0, err
    shown = [line.split()[0] for line in out.splitlines()[1:]]
    assert len(set(shown)) == 6
    for short in shown:
        full = next(t for t in ids if t.startswith(short))
        code, out, err = run(capsys, "traces", "show", short)
        assert code == 0, err
        assert full in out
