"""The worker builds each trace once into a record, and the local store keeps it in its final
form: read back, it is that record, and reading builds nothing."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections import namedtuple
from http import HTTPStatus
from typing import Any

import pytest

import routetrace
from routetrace import cli
from routetrace.backends.base import ExperimentInfo
from routetrace.backends.local import LocalStore
from routetrace.core.build import TraceRecord, record_trace, to_trace
from routetrace.core.live_trace import LiveTrace
from routetrace.core.tracer import Tracer
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
from tests.conftest import traces_of
from tests.fixtures.asgi import read_body
from tests.middleware.conftest import call, drive, make_scope

CONFIG = {
    "experiment": "web",
    "routes": [
        {"path": "/chat/{room}", "experiment": "chat", "capture_body": True,
         "capture_headers": ["content-type", "authorization", "x-custom", "user-agent"],
         "tags": {"team": "chat"}},
        {"path": "/files/**", "span_type": "TOOL"},
    ],
}


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.fixture
def held(tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> list[LiveTrace]:
    """Finished traces, taken off the export hand-off (nothing is written)."""
    out: list[LiveTrace] = []
    monkeypatch.setattr(tracer.exporter.logger, "put", out.append)
    return out


async def chat_app(scope: dict, receive: Any, send: Any) -> None:
    body = await read_body(receive)
    with routetrace.start_span("llm", span_type="LLM") as span:
        span.set_inputs({"prompt": body.decode("utf-8", "replace")})
        span.set_attributes({"model": "m", "temperature": 0.5, "opaque": Opaque(),
                             "pair": (1, 2), "nested": {"k": [Opaque()]}, "none": None})
        span.add_event(routetrace.SpanEvent("retry", attributes={"n": 1, "why": Opaque()}))
        span.set_outputs({"answer": "\udcff lone surrogate"})
    routetrace.update_current_trace(tags={"user": "u1"}, metadata={"session": "s1"},
                                    request_preview="custom preview")
    status = 500 if b"fail" in body else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"set-cookie", b"s=1")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})
    if status == 500:
        raise RuntimeError("the app failed after answering")


def _requests() -> None:
    app = TracingMiddleware(chat_app, config=CONFIG)
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer s3cret"),
               (b"x-custom", b"a"), (b"x-custom", b"b"), (b"user-agent", b"t\xffst"),
               (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    call(app, "POST", "/chat/7", chunks=(b'{"q": ', b'"hi"}'), query=b"a=1&token=t0k",
         headers=headers)
    with pytest.raises(RuntimeError):
        call(app, "POST", "/chat/8", chunks=(b"fail",), headers=headers[:1])
    call(app, "GET", "/files/a/b", raw_path=b"/files/\xff")
    call(app, "GET", "/caf\udce9")


def _round_trip(held: list[LiveTrace], tmp_path: Any) -> None:
    """Each held trace, built as the worker builds it, reads back from the store as built."""
    store = LocalStore(tmp_path / "rt.sqlite")
    try:
        info = store.resolve_experiment(routetrace.Experiment(name="round-trip"))
        records = [record_trace(live, live.processors) for live in held]
        store.write_records(info, records)
        for record in records:
            stored = store.get_trace(record.trace_id)
            assert stored is not None
            built = to_trace(record, info.experiment_id, info.name)
            assert stored.to_dict() == built.to_dict()
    finally:
        store.close()


def test_middleware_traces_read_back_as_the_worker_built_them(held: list[LiveTrace],
                                                              tmp_path: Any) -> None:
    _requests()
    assert len(held) == 4
    _round_trip(held, tmp_path)


def test_wsgi_and_plain_traces_read_back_as_the_worker_built_them(
        held: list[LiveTrace], tracer: Tracer, tmp_path: Any) -> None:
    from flask import Flask

    flask_app = Flask(__name__)

    @flask_app.get("/items/<int:item>")
    def item(item: int) -> str:
        with routetrace.start_span("lookup") as span:
            span.set_attribute("item", item)
        return "x"

    flask_app.wsgi_app = WSGITracingMiddleware(flask_app.wsgi_app, config=CONFIG)
    response = flask_app.test_client().get("/items/3?password=p", headers={
        "Authorization": "Basic c2VjcmV0"})
    assert response.status_code == 200
    response.close()  # the WSGI span ends when the server closes the iterable

    @routetrace.trace
    def gen(n: int) -> Any:
        yield from range(n)

    assert list(gen(3)) == [0, 1, 2]
    with routetrace.start_span("left open"):
        tracer.start_span("never ended")  # still open when the root ends
    assert [live.root.name for live in held] == ["GET", "gen", "left open"], [
        live.root.name for live in held]
    _round_trip(held, tmp_path)


def test_the_store_file_holds_no_credentials(tracer: Tracer) -> None:
    _requests()
    assert routetrace.flush(timeout=30)
    store = tracer.backend
    conn = sqlite3.connect(store.db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = store.db_path.read_bytes()
    for secret in (b"s3cret", b"t0k", b"s=1"):
        assert secret not in data
    assert b"REDACTED" in data


def test_values_of_subclassed_plain_types_are_stored_as_the_plain_types(
        tracer: Tracer, caplog: pytest.LogCaptureFixture) -> None:
    # A server handing ``client`` over as a namedtuple, an app answering with an
    # ``HTTPStatus``: stored as the plain values they are.
    Address = namedtuple("Address", "host port")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": HTTPStatus.ACCEPTED,
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})

    odd = make_scope("GET", "/who")
    odd["client"] = Address("10.0.0.7", 4242)
    traced = TracingMiddleware(app, config=CONFIG)
    asyncio.run(drive(traced, odd))
    asyncio.run(drive(traced, make_scope("GET", "/plain")))
    by_path = {t.data.spans[0].attributes["url.path"]: t for t in traces_of("web")}
    who = by_path["/who"].data.spans[0].attributes
    assert (who["client.address"], who["client.port"]) == ("10.0.0.7", 4242)
    assert who["http.response.status_code"] == 202
    assert by_path["/plain"].data.spans[0].attributes["http.response.status_code"] == 202
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- in the local store -------------------------------------------------------------------
def _rows(store: LocalStore) -> list[tuple]:
    """What another process sees in the store file, without routetrace."""
    conn = sqlite3.connect(store.db_path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "pending_batches" not in tables
        return conn.execute("SELECT name, state, request_preview, span_count FROM traces "
                            "ORDER BY name").fetchall()
    finally:
        conn.close()


def test_a_flushed_trace_is_a_row_of_the_store_before_anything_reads_it(
        tracer: Tracer) -> None:
    _requests()
    assert routetrace.flush(timeout=30)
    rows = _rows(tracer.backend)
    assert [r[0] for r in rows] == ["GET", "GET /files/**", "POST /chat/{room}",
                                    "POST /chat/{room}"]
    assert {r[1] for r in rows} == {"OK", "ERROR"}
    assert "custom preview" in [r[2] for r in rows]
    assert [r[3] for r in rows] == [2, 2, 2, 2]  # the root and the app's "llm" span
    chat = traces_of("chat")
    trace = next(t for t in chat if t.info.state == "OK")
    root = trace.data.spans[0]
    assert root.name == "POST /chat/{room}"
    assert root.inputs["headers"]["authorization"] == "REDACTED"
    assert root.inputs["body"] == {"q": "hi"}
    assert trace.info.tags["team"] == "chat" and trace.info.tags["user"] == "u1"
    assert trace.info.request_preview == "custom preview"
    assert [s.name for s in trace.data.spans] == ["POST /chat/{room}", "llm"]


def _python_calls_into(files: tuple[str, ...], action: Any) -> list[str]:
    """The functions of ``files`` that ``action`` calls (a profiler hook, not a mock)."""
    seen: list[str] = []

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.endswith(files):
            seen.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(hook)
    try:
        action()
    finally:
        sys.setprofile(None)
    return seen


def test_listing_and_counting_traces_build_nothing_and_decode_no_spans(
        tracer: Tracer, capsys: pytest.CaptureFixture) -> None:
    _requests()
    assert routetrace.flush(timeout=30)
    building = ("routetrace/core/build.py", "routetrace/middleware/capture.py",
                "routetrace/middleware/facts.py", "routetrace/middleware/headers.py",
                "json/decoder.py", "routetrace/core/serialize.py")

    def listings() -> None:
        store = tracer.backend
        chat = store.resolve_experiment(routetrace.Experiment(name="chat")).experiment_id
        assert len(store.search_traces(experiment_ids=[chat], include_spans=False)) == 2
        assert store.count_traces() == 4
        assert cli.main(["traces", "list", "--experiment", "chat"]) == 0

    assert _python_calls_into(building, listings) == []
    assert "POST /chat/{room}" in capsys.readouterr().out
    # Opening one trace decodes its spans, once, and builds nothing.
    trace_id = routetrace.search_traces("chat", max_results=1, return_type="list")[0].info.trace_id
    calls = _python_calls_into(building, lambda: routetrace.get_trace(trace_id))
    assert [c for c in calls if c.endswith("decoder.py:decode")] == [calls[0]]  # one decode
    assert not [c for c in calls if "capture.py" in c or "serialize.py" in c
                or c.endswith(("record_trace", "build_trace"))]


def test_span_processors_see_the_live_spans_before_the_row_is_built(tracer: Tracer) -> None:
    seen: list[Any] = []

    def processor(span: Any) -> None:
        seen.append((type(span).__name__, span.inputs))
        span.set_attribute("masked", True)

    routetrace.configure(span_processors=[processor])
    with routetrace.start_span("root") as span:
        span.set_inputs({"x": 1})
    trace = traces_of()[0]
    assert seen == [("LiveSpan", {"x": 1})]
    assert trace.data.spans[0].attributes["masked"] is True


def test_a_record_is_plain_values_named_once(held: list[LiveTrace]) -> None:
    with routetrace.start_span("root") as span:
        span.set_inputs({"q": 1})
    record = record_trace(held[0], ())
    assert isinstance(record, TraceRecord)
    assert record.name == "root" and record.spans[0].inputs_json == '{"q": 1}'
    assert ExperimentInfo  # the store takes records with the experiment it resolved


def test_readers_in_two_threads_see_every_trace(tracer: Tracer) -> None:
    for i in range(300):
        with routetrace.start_span(f"s{i}"):
            pass
    assert routetrace.flush(timeout=30)

    async def both() -> list[int]:
        def count() -> int:
            store = LocalStore(tracer.backend.db_path)
            try:
                return store.count_traces()
            finally:
                store.close()

        return await asyncio.gather(asyncio.to_thread(count), asyncio.to_thread(count))

    assert asyncio.run(both()) == [300, 300]
    assert len({t.info.trace_id for t in traces_of()}) == 300
