"""The local store: a real SQLite file, searched, read back, deleted, shared by processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest

import routetrace
from routetrace import Experiment
from routetrace.backends import backend_for_uri
from routetrace.backends.base import BackendError
from routetrace.backends.local import LocalStore
from tests.conftest import traces_of


def _make(name, *, status="OK", tags=None, sleep_ms=0, experiment=None):
    with routetrace.start_span(name, trace_destination=experiment) as span:
        if tags:
            routetrace.update_current_trace(tags=tags)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        span.set_status(status)
    return span.trace_id


def test_store_layout_wal_and_default_experiment(store, tmp_path):
    _make("a")
    routetrace.flush()
    db = tmp_path / "mlruns" / "routetrace.sqlite"
    assert db.is_file()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [e.name for e in store.list_experiments()] == ["Default"]
    assert store.list_experiments()[0].experiment_id == "0"


def test_experiments_created_by_name_on_first_use(store):
    _make("a", experiment=Experiment(name="one"))
    _make("b", experiment=Experiment(name="two"))
    _make("c", experiment=Experiment(name="one"))
    routetrace.flush()
    names = {e.name: e.experiment_id for e in store.list_experiments()}
    assert set(names) == {"Default", "one", "two"}
    assert len(traces_of("one")) == 2
    assert len(traces_of(Experiment(experiment_id=names["two"]))) == 1
    assert traces_of("missing") == []


def test_search_filters(store):
    fast = _make("GET /a", tags={"route": "/a"})
    time.sleep(0.002)  # distinct request_time (milliseconds) for the ordering checks
    slow = _make("POST /chat", status="ERROR", tags={"route": "/chat/**"}, sleep_ms=30)
    routetrace.flush()

    def ids(f):
        found = routetrace.search_traces(filter_string=f, return_type="list")
        return [t.info.trace_id for t in found]

    assert ids("trace.status = 'ERROR'") == [slow]
    assert ids("trace.status = 'ERROR' AND tags.route = '/chat/**'") == [slow]
    assert ids("tags.route != '/chat/**'") == [fast]
    assert ids("trace.execution_time_ms >= 25") == [slow]
    assert ids("trace.name LIKE 'GET%'") == [fast]
    assert ids("trace.name LIKE 'get%'") == []  # LIKE is case-sensitive, as in MLflow
    assert ids("trace.name ILIKE 'get%'") == [fast]
    assert ids("tags.`mlflow.traceName` = 'POST /chat'") == [slow]
    assert ids("trace.timestamp_ms > 0") == [slow, fast]  # newest first
    oldest_first = routetrace.search_traces(order_by=["timestamp_ms ASC"], return_type="list")
    assert [t.info.trace_id for t in oldest_first] == [fast, slow]
    assert len(routetrace.search_traces(max_results=1, return_type="list")) == 1
    for wrong in (0, -1, True, 2.5, "10"):
        with pytest.raises(ValueError, match="max_results must be a positive integer"):
            routetrace.search_traces(max_results=wrong, return_type="list")


def test_hostile_filter_never_reaches_sql(store):
    _make("a")
    routetrace.flush()
    with pytest.raises(ValueError):
        routetrace.search_traces(filter_string="trace.status = 'OK'; DELETE FROM traces",
                                 return_type="list")
    assert len(traces_of()) == 1


@pytest.mark.parametrize(("filter_string", "message"), [
    pytest.param("trace.timestamp_ms > " + "9" * 30, "trace.timestamp_ms .*out of range",
                 id="huge timestamp"),
    pytest.param("trace.execution_time_ms < " + str(-(2**63) - 1), "out of range",
                 id="huge negative"),
    pytest.param(" AND ".join(["trace.status = 'OK'"] * 3000), "too many conditions",
                 id="3000 ANDs"),
])
def test_filters_sqlite_cannot_run_are_value_errors(store, filter_string, message):
    _make("a")
    routetrace.flush()
    with pytest.raises(ValueError, match=message):
        routetrace.search_traces(filter_string=filter_string, return_type="list")
    with pytest.raises(ValueError, match=message):
        store.count_traces(filter_string=filter_string)


def test_a_huge_experiment_id_is_a_value_error(store):
    with pytest.raises(ValueError, match="is not an id of the local store"):
        store.search_traces(experiment_ids=["9" * 30])
    with pytest.raises(ValueError, match="is not an id of the local store"):
        store.count_traces(experiment_ids=["9" * 30])


def test_get_trace_accepts_both_id_forms_and_rejects_garbage(store):
    trace_id = _make("x")
    routetrace.flush()
    assert routetrace.get_trace(trace_id).info.trace_id == trace_id
    assert routetrace.get_trace(trace_id[3:]).info.trace_id == trace_id
    assert routetrace.get_trace("tr-" + "0" * 32) is None
    with pytest.raises(ValueError, match="not a trace id"):
        routetrace.get_trace("../../etc/passwd")


def test_delete_traces(store):
    ids = [
        _make(f"t{i}", experiment=Experiment(name="del"), sleep_ms=2, tags={"n": str(i)})
        for i in range(5)
    ]
    _make("keep", experiment=Experiment(name="other"))
    routetrace.flush()
    assert routetrace.delete_traces("del", trace_ids=[ids[0]]) == 1
    assert routetrace.delete_traces("del", max_traces=2) == 2  # oldest first
    left = {t.info.trace_id for t in traces_of("del")}
    assert left == set(ids[3:])
    newest = routetrace.get_trace(ids[4]).info.request_time
    assert routetrace.delete_traces("del", max_timestamp_millis=newest - 1) == 1
    assert routetrace.delete_traces("missing-experiment", max_traces=5) == 0
    with pytest.raises(ValueError, match="refusing"):
        routetrace.delete_traces("del")
    assert len(traces_of("other")) == 1
    # tags and metadata are deleted with their trace
    conn = sqlite3.connect(store.db_path)
    for table in ("trace_tags", "trace_metadata"):
        orphans = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE trace_id NOT IN (SELECT trace_id FROM traces)"
        ).fetchone()[0]
        assert orphans == 0
    assert conn.execute("SELECT COUNT(*) FROM trace_tags").fetchone()[0] == 1  # t4's 'n' tag


def test_write_is_idempotent_and_merges_parts_of_one_trace(store):
    _make("a")
    trace = traces_of()[0]
    exp = store.resolve_experiment(Experiment(name="Default"))
    store.write_traces(exp, [trace])  # a replay: no duplicate, no error
    assert len(traces_of()) == 1
    other = routetrace.Trace.from_dict(trace.to_dict())
    other.data.spans[0].span_id = "ffffffffffffffff"
    store.write_traces(exp, [other])
    merged = routetrace.get_trace(trace.info.trace_id)
    assert sorted(s.span_id for s in merged.data.spans) == sorted(
        [trace.data.spans[0].span_id, "ffffffffffffffff"]
    )


@pytest.mark.parametrize(
    ("uri", "suffix"),
    [
        pytest.param("{d}", "routetrace.sqlite", id="path"),
        pytest.param("file://{d}", "routetrace.sqlite", id="file uri"),
        pytest.param("sqlite:///{d}/x.db", "x.db", id="sqlite uri"),
    ],
)
def test_uri_forms(tmp_path, uri, suffix):
    backend = backend_for_uri(uri.format(d=tmp_path / "s"))
    assert isinstance(backend, LocalStore)
    assert backend.db_path.name == suffix


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scheme 'ftp'"):
        backend_for_uri("ftp://user:secret@host/x")
    with pytest.raises(ValueError) as info:
        backend_for_uri("ftp://user:secret@host/x")
    assert "secret" not in str(info.value)


def test_unwritable_store_is_a_backend_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = LocalStore(blocker / "db.sqlite")
    with pytest.raises(BackendError, match="cannot open the local store"):
        store.resolve_experiment(Experiment(name="x"))


def _writer(uri: str, worker: int, count: int) -> None:
    import routetrace as rt

    rt.set_tracking_uri(uri)
    for i in range(count):
        with rt.start_span(f"w{worker}-{i}", trace_destination=rt.Experiment(name=f"e{i % 3}")):
            pass
    assert rt.flush(60)


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_writing_one_store_at_once(tmp_path, processes):
    uri = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(uri, w, 300)) for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = LocalStore.from_uri(uri)
    traces = store.search_traces(max_results=100_000)
    names = sorted(t.root_span.name for t in traces)
    assert names == sorted(f"w{w}-{i}" for w in range(processes) for i in range(300))
    assert {e.name for e in store.list_experiments()} == {"Default", "e0", "e1", "e2"}
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("layout", [
    pytest.param("CREATE TABLE traces (trace_id TEXT PRIMARY KEY, spans TEXT)", id="format 0"),
    pytest.param("CREATE TABLE traces (trace_id TEXT, spans TEXT); PRAGMA user_version = 1",
                 id="format 1, inputs and outputs as strings"),
    pytest.param("CREATE TABLE traces (trace_id TEXT); PRAGMA user_version = 99", id="newer"),
])
def test_a_store_of_another_format_is_refused_naming_the_file(tmp_path, layout):
    path = tmp_path / "old" / "routetrace.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(layout)
    tables = conn.execute("SELECT name FROM sqlite_master").fetchall()
    conn.close()
    store = LocalStore(path)
    for action in (store.count_traces, lambda: store.search_traces(max_results=1),
                   lambda: store.resolve_experiment(Experiment(name="x"))):
        with pytest.raises(BackendError, match="development version") as caught:
            action()
        assert str(path) in str(caught.value) and "move or delete" in str(caught.value)
        assert caught.value.retryable is False
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == tables  # untouched
    conn.close()


def test_a_new_store_is_stamped_with_its_format_and_reopened(store):
    _make("a")
    assert [t.info.tags["mlflow.traceName"] for t in traces_of()] == ["a"]
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
    again = LocalStore(store.db_path)
    assert [t.info.tags["mlflow.traceName"] for t in again.search_traces()] == ["a"]
    again.close()


def test_a_bad_filter_or_experiment_id_never_creates_the_store(tmp_path):
    store = LocalStore.from_uri(str(tmp_path / "mlruns"))
    with pytest.raises(ValueError):
        store.search_traces(filter_string="trace.nonsense = 'x'")
    with pytest.raises(ValueError):
        store.count_traces(filter_string="trace.nonsense = 'x'")
    with pytest.raises(ValueError, match="not an id of the local store"):
        store.search_traces(experiment_ids=["chat"])
    with pytest.raises(ValueError):
        store.delete_traces(experiment_id="chat", max_traces=1)
    assert list(tmp_path.iterdir()) == []


def _records(count: int, first: int = 0) -> list:
    from routetrace.core.build import SpanRecord, TraceRecord

    start = 1_764_000_000_000
    return [
        TraceRecord(
            f"tr-{k + 1:032x}", None, "GET /x", start + k, 1, "OK", '{"path":"/x"}', None, None,
            {"route": "/x", "k": str(k)}, {"service": "bench"},
            [SpanRecord(f"{k + 1:016x}", None, "GET /x", "UNKNOWN", (start + k) * 10**6,
                        (start + k) * 10**6 + 1000, "OK", "", '{"path":"/x"}', "null",
                        {"http.route": "/x"}, None)],
        )
        for k in range(first, first + count)
    ]


def _fresh_connection(store, tmp_path) -> sqlite3.Connection:
    _make("creates the store")
    routetrace.flush()
    return sqlite3.connect(tmp_path / "mlruns" / "routetrace.sqlite", isolation_level=None)


def test_a_batch_is_written_in_a_few_statements_not_one_per_row(store, tmp_path):
    """executemany steps SQLite once per row, letting go of the GIL each time: an export
    thread sharing the GIL with a busy event loop then crawls, and its queue grows."""
    from routetrace.backends.local.write import store_records

    conn = _fresh_connection(store, tmp_path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    store_records(conn, 0, _records(600))
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) <= 20  # 600 traces, 1 200 tags, 600 metadata rows
    assert conn.execute("SELECT count(*) FROM traces WHERE experiment_id = 0").fetchone()[0] == 601
    assert conn.execute("SELECT count(*) FROM trace_tags WHERE key = 'k'").fetchone()[0] == 600
    assert routetrace.get_trace("tr-" + f"{600:032x}").info.tags["k"] == "599"


def test_a_low_sqlite_parameter_limit_still_stores_every_trace(store, tmp_path):
    from routetrace.backends.local.write import store_records

    conn = _fresh_connection(store, tmp_path)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40)  # two trace rows a statement
    store_records(conn, 0, _records(37))
    assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 38


def test_a_batch_overlapping_stored_traces_adds_only_the_new_ones(store, tmp_path):
    from routetrace.backends.local.write import store_records

    conn = _fresh_connection(store, tmp_path)
    store_records(conn, 0, _records(300))
    store_records(conn, 0, _records(300, first=200))
    assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 501
    assert conn.execute("SELECT count(*) FROM trace_tags WHERE key = 'k'").fetchone()[0] == 500
