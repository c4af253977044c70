"""Snapshots: a trace stored as plain data and built later must be the trace built at once."""

from __future__ import annotations

import asyncio
import logging
import marshal
import sqlite3
import time
from collections import namedtuple
from http import HTTPStatus
from typing import Any

import pytest

import routetrace
from routetrace.backends.local import LocalStore
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
from routetrace.tracing import snapshot
from routetrace.tracing.build import build_trace
from routetrace.tracing.live_trace import LiveTrace
from routetrace.tracing.tracer import Tracer
from tests.conftest import traces_of
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
    monkeypatch.setattr(tracer.logger, "put", out.append)
    return out


async def chat_app(scope: dict, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
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


def _same(live: LiveTrace) -> None:
    later = build_trace(snapshot.revive(snapshot.take(live), live.destination)[0], ())
    now = build_trace(live, ())
    assert later.to_dict() == now.to_dict()


def test_middleware_traces_build_the_same_later_as_now(held: list[LiveTrace]) -> None:
    _requests()
    assert len(held) == 4
    for live in held:
        _same(live)


def test_wsgi_and_plain_traces_build_the_same_later_as_now(held: list[LiveTrace],
                                                          tracer: Tracer) -> None:
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
    for live in held:
        _same(live)


def test_a_batch_round_trips_through_one_document(held: list[LiveTrace]) -> None:
    _requests()
    snaps = [snapshot.take(live) for live in held]
    payload = snapshot.encode_batch(snaps)
    fmt, rules, blobs = marshal.loads(payload)
    assert fmt == snapshot.FORMAT
    assert len(rules) == 3  # /chat, /files/**, the default: each once
    assert len(blobs) == len(held)
    revived = snapshot.decode_batch(payload, held[0].destination)
    assert [r.trace_id for r in revived] == [live.trace_id for live in held]


def test_snapshots_hold_no_credentials(held: list[LiveTrace]) -> None:
    _requests()
    payload = snapshot.encode_batch([snapshot.take(live) for live in held])
    for secret in (b"s3cret", b"t0k", b"s=1"):
        assert secret not in payload
    assert b"REDACTED" in payload


def test_unknown_deferred_capture_is_built_at_once(held: list[LiveTrace]) -> None:
    with routetrace.start_span("root") as span:
        span._deferred = lambda s: s.set_attribute("late", True)
    with pytest.raises(snapshot.NotSnapshottable):
        snapshot.take(held[0])


def test_a_newer_format_is_refused_not_misread(held: list[LiveTrace]) -> None:
    with routetrace.start_span("root"):
        pass
    _, rules, blobs = marshal.loads(snapshot.encode_batch([snapshot.take(held[0])]))
    newer = marshal.dumps((99, rules, blobs), 4)
    with pytest.raises(ValueError, match="format 99"):
        snapshot.decode_batch(newer, held[0].destination)
    with pytest.raises(ValueError, match="format 1"):  # text: the development-time JSON
        snapshot.decode_batch('{"format":1,"rules":{},"traces":[]}',  # type: ignore[arg-type]
                              held[0].destination)
    with pytest.raises(ValueError, match="not a snapshot batch"):
        snapshot.decode_batch(b"\x00garbage", held[0].destination)


def test_values_marshal_refuses_are_stored_as_their_plain_types(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A server handing ``client`` over as a namedtuple and an app answering with an
    # ``HTTPStatus``: marshal refuses subclasses of plain types, so the batch stores that
    # trace's values as the plain types (what the JSON of a built trace holds), the other
    # traces of the batch untouched.
    Address = namedtuple("Address", "host port")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": HTTPStatus.ACCEPTED,
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})

    odd = make_scope("GET", "/who")
    odd["client"] = Address("10.0.0.7", 4242)
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)  # no idle-time building
    traced = TracingMiddleware(app, config=CONFIG)

    async def both() -> None:
        await drive(traced, odd)
        await drive(traced, make_scope("GET", "/plain"))

    asyncio.run(drive(traced, make_scope("GET", "/warm")))  # the worker started
    assert routetrace.flush(timeout=30)
    with tracer.logger._lock:  # one batch for both (the request path takes no lock)
        asyncio.run(both())
    assert routetrace.flush(timeout=30)
    assert _pending(tracer.backend) == 3  # stored as snapshots, built when read
    by_path = {t.data.spans[0].attributes["url.path"]: t for t in traces_of("web")}
    who = by_path["/who"].data.spans[0].attributes
    assert (who["client.address"], who["client.port"]) == ("10.0.0.7", 4242)
    assert who["http.response.status_code"] == 202
    assert by_path["/plain"].data.spans[0].attributes["http.response.status_code"] == 202
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # expected, quiet


def test_a_format_2_batch_of_per_trace_blobs_is_still_read(held: list[LiveTrace]) -> None:
    _requests()
    snaps = [snapshot.take(live) for live in held]
    _, rules, traces = marshal.loads(snapshot.encode_batch(snaps))
    older = marshal.dumps((2, rules, [marshal.dumps(t, 4) for t in traces]), 4)
    revived = snapshot.decode_batch(older, held[0].destination)
    assert [r.trace_id for r in revived] == [live.trace_id for live in held]


# -- in the local store -------------------------------------------------------------------
def _pending(store: LocalStore) -> int:
    conn = sqlite3.connect(store.db_path)
    try:
        return conn.execute("SELECT COALESCE(SUM(trace_count), 0) FROM pending_batches"
                            ).fetchone()[0]
    finally:
        conn.close()


def test_store_keeps_snapshots_and_builds_them_on_first_read(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)  # no idle-time building
    _requests()
    assert routetrace.flush(timeout=30)
    store = tracer.backend
    assert isinstance(store, LocalStore)
    assert _pending(store) == 4
    assert store.stats()["traces"] == 4 and store.stats()["traces_to_build"] == 4
    chat = traces_of("chat")
    assert _pending(store) == 0
    assert len(chat) == 2 and len(traces_of("web")) == 2
    trace = next(t for t in chat if t.info.state == "OK")
    root = trace.data.spans[0]
    assert root.name == "POST /chat/{room}"
    assert root.inputs["headers"]["authorization"] == "REDACTED"
    assert root.inputs["body"] == {"q": "hi"}
    assert trace.info.tags["team"] == "chat" and trace.info.tags["user"] == "u1"
    assert trace.info.request_preview == "custom preview"
    assert [s.name for s in trace.data.spans] == ["POST /chat/{room}", "llm"]


def test_idle_worker_builds_the_snapshots(tracer: Tracer) -> None:
    _requests()
    assert routetrace.flush(timeout=30)
    store = tracer.backend
    deadline = time.monotonic() + 10
    while _pending(store) and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker builds them after 0.2 s without traces
    assert _pending(store) == 0
    assert store.stats()["traces"] == 4


def test_an_unreadable_batch_is_skipped_and_the_rest_built(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)
    store = tracer.backend
    with routetrace.start_span("first"):
        pass
    assert routetrace.flush(timeout=30)
    conn = sqlite3.connect(store.db_path)
    conn.execute("UPDATE pending_batches SET payload = '{\"format\": 99}'")
    conn.commit()
    conn.close()
    with routetrace.start_span("second"):
        pass
    assert routetrace.flush(timeout=30)
    with caplog.at_level(logging.WARNING, logger="routetrace"):
        names = [t.data.spans[0].name for t in traces_of()]
    assert names == ["second"]
    assert "cannot be read" in caplog.text
    assert _pending(store) == 1  # left in place for a routetrace that can read it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="routetrace"):
        assert len(traces_of()) == 1
    assert "cannot be read" not in caplog.text  # warned once per store, not per read


def test_a_trace_that_fails_to_build_is_counted_in_the_stores_stats(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)
    store = tracer.backend
    for name in ("good", "bad", "also good"):
        with routetrace.start_span(name):
            pass
    assert routetrace.flush(timeout=30)
    assert store.stats()["traces_failed_to_build"] == 0

    def build(live: LiveTrace, processors: tuple) -> Any:
        if live.root is not None and live.root.name == "bad":
            raise RuntimeError("cannot build this one")
        return build_trace(live, processors)

    monkeypatch.setattr("routetrace.backends.local.build_trace", build)
    with caplog.at_level(logging.WARNING, logger="routetrace"):
        names = sorted(t.data.spans[0].name for t in traces_of())
    assert names == ["also good", "good"]
    assert "traces_failed_to_build" in caplog.text
    assert _pending(store) == 0
    assert store.stats()["traces_failed_to_build"] == 1
    reopened = LocalStore.from_uri(str(store.db_path.parent))  # kept in the store itself
    try:
        assert reopened.stats()["traces_failed_to_build"] == 1
    finally:
        reopened.close()


def test_span_processors_see_live_spans_so_traces_are_built_at_once(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)
    routetrace.configure(span_processors=[lambda span: span.set_attribute("masked", True)])
    with routetrace.start_span("root"):
        pass
    assert routetrace.flush(timeout=30)
    assert _pending(tracer.backend) == 0
    assert traces_of()[0].data.spans[0].attributes["masked"] is True


def test_readers_in_two_threads_build_each_batch_once(
        tracer: Tracer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer.logger, "_compact", lambda: False)
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


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10", True])
def test_compact_refuses_a_bad_slice(tracer: Tracer, bad: Any) -> None:
    with pytest.raises(ValueError, match="max_traces must be a positive integer"):
        tracer.backend.compact(bad)
