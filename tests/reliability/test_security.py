"""Security: credentials never leave the process, the viewer stays on loopback unless told
otherwise, a filter string never reaches SQL, experiment names never become paths.

Every "never stored" check scans raw bytes (all files of the store: database, WAL, shared
memory; for the MLflow server, its database and artifact tree) and has a positive control, a
captured non-secret marker that must be found, so a scan that sees nothing fails.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routetrace
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
from tests.conftest import traces_of

SECRET = "rt-s3cr3t-"
VISIBLE = "rt-v1s1ble-"
CREDENTIALS = ("authorization", "cookie", "x-api-key", "proxy-authorization")
CONFIG = {"experiment": "sec", "capture_headers": ["*"], "capture_body": True}


def _request_headers(tag: str) -> list[tuple[str, str]]:
    return [*((name, f"{SECRET}{tag}-{name}") for name in CREDENTIALS),
            ("Authorization", f"{SECRET}{tag}-dup"),  # a second one, other case
            ("user-agent", f"{VISIBLE}{tag}")]


def _asgi_app() -> Any:
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"set-cookie", f"{SECRET}asgi-set-cookie".encode()),
            (b"set-cookie", f"{SECRET}asgi-set-cookie-2".encode()),
            (b"x-api-key", f"{SECRET}asgi-response-key".encode()),
            (b"x-visible", f"{VISIBLE}asgi-response".encode())]})
        await send({"type": "http.response.body", "body": b"ok"})

    return TracingMiddleware(app, config=CONFIG)


def _wsgi_app() -> Any:
    def app(environ, start_response):
        start_response("200 OK", [("Set-Cookie", f"{SECRET}wsgi-set-cookie"),
                                  ("X-Visible", f"{VISIBLE}wsgi-response")])
        return [b"ok"]

    return WSGITracingMiddleware(app, config=CONFIG)


async def _send_asgi(app: Any, tag: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/a", headers=_request_headers(tag),
                             params={"api_key": f"{SECRET}{tag}-query"})
        assert r.text == "ok"


def _send_wsgi(app: Any, tag: str) -> None:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        r = client.get("/w", headers=_request_headers(tag),
                       params={"token": f"{SECRET}{tag}-query"})
        assert r.text == "ok"


def _scan(paths: list[Path]) -> bytes:
    blob = b""
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            blob += path.read_bytes()
    return blob


def test_credentials_never_reach_the_local_store(tracer) -> None:
    asyncio.run(_send_asgi(_asgi_app(), "asgi"))
    _send_wsgi(_wsgi_app(), "wsgi")
    traces = traces_of("sec")
    assert len(traces) == 2
    # The API shows the headers as captured, redacted; the raw files hold no secret at all.
    for trace in traces:
        headers = trace.root_span.inputs["headers"]
        assert {headers[name] for name in ("authorization", "cookie", "x-api-key")} == {
            "REDACTED"}
    blob = _scan([Path(tracer.backend.db_path).parent])
    assert SECRET.encode() not in blob
    for marker in ("asgi", "wsgi", "asgi-response", "wsgi-response"):
        assert f"{VISIBLE}{marker}".encode() in blob


@pytest.mark.slow
def test_credentials_never_reach_the_mlflow_server(mlflow_tracking) -> None:
    server = mlflow_tracking
    tag = uuid.uuid4().hex[:8]
    config = {**CONFIG, "experiment": f"sec-{tag}"}
    asyncio.run(_send_asgi(TracingMiddleware(_asgi_app().app, config=config), tag))
    assert routetrace.flush(timeout=60)
    stats = routetrace.get_export_stats()
    assert stats["written"] == 1 and stats["spooled"] == 0
    # read back through the server's API
    (trace,) = routetrace.search_traces(f"sec-{tag}", return_type="list")
    assert SECRET not in repr(trace.to_dict())
    blob = _scan([server.root])  # the server's database, WAL and artifact store
    assert f"{VISIBLE}{tag}".encode() in blob
    assert f"{SECRET}{tag}".encode() not in blob
    assert f"{SECRET}asgi".encode() not in blob


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_viewer_refuses_non_loopback_without_the_flag(host: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "routetrace"
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path / "store")}
    out = subprocess.run([str(cli), "ui", "--host", host, "--port", "0"], env=env,
                         capture_output=True, text=True, timeout=30)  # a server would hang
    assert out.returncode != 0
    assert "--allow-remote" in out.stderr and "refusing" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


# -- filter strings ------------------------------------------------------------------------
ATTACHED = f"/tmp/routetrace-attached-{uuid.uuid4().hex}"  # must never be created
FILTER_TOKENS = [
    "trace.status", "status", "tags.route", "tags.`a b`", "tags.\"x\"", "metadata.k",
    "timestamp_ms", "trace.timestamp_ms", "execution_time_ms", "run_id", "name", "span.name",
    "attributes.x", "trace.name", "=", "!=", "<", ">=", "LIKE", "ILIKE", "IN", "NOT", "AND",
    "OR", "'OK'", "'ERROR'", "'%'", "'_'", "\"x\"", "1", "-1", "1e9", "0x10", "(", ")", ",",
    "'", "\"", "`", ";", "--", "/*", "*/", "DROP TABLE traces", "DELETE FROM traces",
    "1=1", "' OR '1'='1", "'); DROP TABLE traces; --", "UNION SELECT * FROM experiments",
    "sqlite_master", f"ATTACH DATABASE '{ATTACHED}' AS y", "\x00", "\\", "?", ":name", "$1", "%",
]
NUMERIC_FIELDS = ["trace.timestamp_ms", "timestamp_ms", "trace.execution_time_ms",
                  "tags.n", "metadata.n"]
# Integers of any size: around SQLite's 64-bit bounds, far past them, and past the digits
# Python's int() converts from text; written bare, quoted, negative, with a fraction.
integers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
    st.integers(min_value=-(10**4000), max_value=10**4000),  # str() stops at 4300 digits
).map(str) | st.text(alphabet="0123456789", min_size=1, max_size=6000)
numbers = st.builds(
    lambda field, op, n, form: f"{field} {op} " + form.format(n),
    st.sampled_from(NUMERIC_FIELDS), st.sampled_from(["=", "!=", "<", ">=", "LIKE"]), integers,
    st.sampled_from(["{}", "-{}", "'{}'", "{}.5", "0.{}"]),
)
# Deep expressions: up to several thousand conditions joined by AND.
deep = st.builds(
    lambda clause, n: " AND ".join([clause] * n),
    st.sampled_from(["trace.status = 'OK'", "tags.route = '/chat/**'",
                     "trace.timestamp_ms > 0", "metadata.k != 'x'"]),
    st.integers(min_value=1, max_value=5000),
)
filters = st.one_of(
    st.lists(st.sampled_from(FILTER_TOKENS), min_size=1, max_size=8).map(" ".join),
    st.lists(st.sampled_from(FILTER_TOKENS), min_size=1, max_size=8).map("".join),
    st.text(max_size=60),
    st.builds(lambda k, v: f"tags.{k} = '{v}'", st.text(max_size=10), st.text(max_size=20)),
    numbers,
    st.lists(numbers, min_size=1, max_size=5).map(" AND ".join),
    deep,
)


def _schema_and_counts(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(db)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        counts = tuple(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                       for table in ("experiments", "traces", "trace_tags", "trace_metadata"))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return schema, counts
    finally:
        conn.close()


def test_filter_strings_never_reach_sql(tracer) -> None:
    for i in range(5):
        with routetrace.start_span(f"t{i}") as span:
            routetrace.update_current_trace(tags={"route": "/chat/**", "k": str(i)})
            span.set_inputs({"i": i})
    all_ids = {t.info.trace_id for t in traces_of()}
    assert len(all_ids) == 5
    db = Path(tracer.backend.db_path)
    before = _schema_and_counts(db)
    outcomes = {"results": 0, "ValueError": 0}

    @settings(max_examples=600, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(filter_string=filters)
    def check(filter_string: str) -> None:
        try:
            found = routetrace.search_traces(filter_string=filter_string, max_results=100,
                                             return_type="list")
        except ValueError:
            outcomes["ValueError"] += 1
            return
        outcomes["results"] += 1
        assert {t.info.trace_id for t in found} <= all_ids

    check()
    assert outcomes["results"] + outcomes["ValueError"] >= 600
    assert outcomes["ValueError"] > 0 and outcomes["results"] > 0
    assert _schema_and_counts(db) == before
    assert not Path(ATTACHED).exists()


# -- experiment names ----------------------------------------------------------------------
HOSTILE_NAMES = ["../../etc", "../escaped", "/abs/olute", "/tmp", "..", ".", "a/../../b",
                 "C:\\Windows\\x", "nul\x00byte", "~/home", "%2e%2e%2f", "\u202e\u2066rtl",
                 "a" * 5000]


def _tree(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if skip not in p.parents and p != skip}


def test_experiment_names_never_become_paths(reset_tracer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)  # relative escapes would land inside tmp_path: visible below
    store = cwd / "store"
    reset_tracer(MLFLOW_TRACKING_URI=str(store))
    before = _tree(tmp_path, store)
    for name in HOSTILE_NAMES:
        with routetrace.start_span("x", trace_destination=routetrace.Experiment(name=name)):
            pass
        app = TracingMiddleware(_asgi_app().app, config={"experiment": name})
        asyncio.run(_send_asgi(app, "n"))
    for blank in ("", " ", "\t"):
        with pytest.raises(ValueError, match="non-empty"):
            routetrace.Experiment(name=blank)
    routetrace.set_experiment("../../set-experiment")
    with routetrace.start_span("y"):
        pass
    assert routetrace.flush(timeout=30)
    stats = routetrace.get_export_stats()
    assert stats["spooled"] == 0 and stats["dropped"] == 0
    assert _tree(tmp_path, store) == before  # nothing created outside the store directory
    assert not Path("/abs").exists()
    names = {e.name for e in tracer_backend_experiments()}
    for name in [*HOSTILE_NAMES, "../../set-experiment"]:
        assert name in names  # stored as data, byte for byte
    assert stats["written"] + stats["failed"] == 2 * len(HOSTILE_NAMES) + 1


def tracer_backend_experiments() -> list[Any]:
    from routetrace.core.tracer import get_tracer

    return get_tracer().backend.list_experiments()
