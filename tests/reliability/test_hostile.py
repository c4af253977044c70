"""Hostile input, generated (hypothesis): ≥ 10 000 requests and WebSocket sessions.

The colleague's property test (tests/middleware/test_properties.py) sends one request per
example with a mild header set. This one goes further, in batches of 20 per example, through
an in-process ASGI harness (no sockets):

- paths with percent-encoding, lone surrogates (a server's escape of non-UTF-8) and raw
  non-UTF-8 ``raw_path`` bytes; query strings carrying secrets under redacted keys;
- headers: non-UTF-8 values, 0-64 KiB values, mixed-case and duplicated names, credentials
  (``authorization``, ``cookie``, ``x-api-key``, ``proxy-authorization``) repeated;
- bodies in up to 6 chunks, up to 64 KiB; malformed and duplicated ``traceparent`` headers;
- WebSocket sessions: accept or deny, text and bytes frames (empty, huge, non-UTF-8 bytes),
  client or server close;
- a route table capturing every header and every body.

Properties: every response (every message the app sends, byte for byte) equals the bare app's,
except the one trace id header; no exception reaches the app through ``receive``/``send``;
nothing inside routetrace fails (guard counters); every traced request or session is stored
exactly once; and after a flush no secret value is anywhere in the SQLite files (database,
WAL, shared memory), while a marker in a captured header is (the scan can see).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routetrace
from routetrace.middleware import TracingMiddleware, guard
from routetrace.middleware.capture import parse_traceparent
from tests.conftest import traces_of
from tests.middleware.conftest import make_scope

EXAMPLES = int(os.environ.get("ROUTETRACE_HOSTILE_EXAMPLES", "500"))
BATCH = 20
SECRET = b"rt-s3cr3t-"  # every credential value starts with this; nothing else contains it
VISIBLE = b"rt-v1s1ble-"  # a captured, non-secret header value: the positive control

CONFIG = {
    "experiment": "hostile",
    "capture_headers": ["*"],
    "capture_body": True,
    "trace_id_header": "x-trace-id",
    "exclude": ["/healthz"],
    "routes": [
        {"path": "/chat/**", "experiment": "chat", "capture_body": 10},
        {"path": "/math/{op}", "methods": ["POST"], "experiment": "math",
         "capture_headers": ["authorization", "cookie", "x-api-key", "user-agent"]},
    ],
}


class AppError(Exception):
    pass


class Seen:
    """What the app noticed: exceptions raised into it by receive/send."""

    errors: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    try:
        if scope["type"] == "websocket":
            await _ws(scope, receive, send)
        else:
            await _http(scope, receive, send)
    except AppError:
        raise
    except Exception as exc:  # receive/send raised into the app: the property fails
        Seen.errors.append(repr(exc))
        raise


def _digest(scope: dict[str, Any]) -> Any:
    digest = hashlib.sha256()
    for part in (scope.get("method"), scope["path"], scope["raw_path"], scope["query_string"]):
        digest.update(repr(part).encode())
    for name, value in scope["headers"]:
        digest.update(name + b":" + value + b"\n")
    return digest


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    digest = _digest(scope)
    more = True
    while more:
        message = await receive()
        digest.update(message.get("body", b""))
        more = message.get("more_body", False)
    value = digest.digest()
    if value[0] < 6:
        raise AppError(value.hex())
    status = (200, 201, 204, 304, 400, 404, 500, 503)[value[1] % 8]
    headers = [(b"content-type", b"application/octet-stream"), (b"x-digest", value.hex().encode()),
               (b"set-cookie", SECRET + value[:8].hex().encode()),
               (b"Set-Cookie", SECRET + b"upper-" + value[8:12].hex().encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if value[2] % 3 == 0:  # a streamed response
        for i in range(value[3] % 4):
            await send({"type": "http.response.body", "body": value[i:i + 8], "more_body": True})
    await send({"type": "http.response.body", "body": value})


async def _ws(scope: dict[str, Any], receive: Any, send: Any) -> None:
    digest = _digest(scope)
    message = await receive()
    assert message["type"] == "websocket.connect"
    value = digest.digest()
    if value[0] < 20:  # denied handshake
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept", "headers": [(b"set-cookie", SECRET + b"ws")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text, data = message.get("text"), message.get("bytes")
        if text == "bye":
            await send({"type": "websocket.close", "code": 1000 if value[1] % 2 else 1011})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text[::-1]})
        else:
            await send({"type": "websocket.send", "bytes": hashlib.sha256(data).digest()})


# -- strategies ----------------------------------------------------------------------------
secrets = st.binary(max_size=24).map(lambda b: SECRET + b.hex().encode())
huge = st.integers(0, 65536).map(lambda n: b"h" * n)
header_values = st.one_of(st.binary(max_size=300), huge, st.just(VISIBLE + b"ua"))
credential_headers = st.tuples(
    st.sampled_from([b"authorization", b"cookie", b"x-api-key", b"proxy-authorization"]),
    secrets)
plain_headers = st.tuples(
    st.one_of(st.sampled_from([b"user-agent", b"content-type", b"accept", b"x-request-id",
                               b"content-length", b"host", b"traceparent"]),
              st.binary(min_size=1, max_size=30)),
    header_values)
traceparents = st.one_of(
    st.just(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    st.just(b"00-00000000000000000000000000000000-0000000000000000-01"),
    st.just(b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    st.just(b"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"),
    st.just(b" 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra "),
    st.binary(max_size=80),
    st.text(alphabet="0123456789abcdef-", max_size=60).map(str.encode),
)
paths = st.one_of(
    st.sampled_from(["/", "/chat/1", "/math/add", "/healthz", "/chat/x/y", "/static/a.js",
                     "/%2e%2e/%2F", "/caf\udce9", "/\x00", "/" + "a" * 5000]),
    st.text(st.characters(blacklist_categories=()), max_size=60).map(lambda s: "/" + s),
    st.lists(st.sampled_from(["%00", "%ff", "%c3%a9", "%2F", "..", "a", "%", "%zz"]),
             max_size=10).map(lambda parts: "/" + "/".join(parts)),
)
queries = st.one_of(
    st.binary(max_size=60),
    st.tuples(st.sampled_from([b"api_key", b"token", b"password", b"Secret"]), secrets).map(
        lambda kv: b"q=1&" + kv[0] + b"=" + kv[1]),
)
http_requests = st.fixed_dictionaries({
    "kind": st.just("http"),
    "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-WEIRD"]),
    "path": paths,
    "raw_path": st.one_of(st.none(), st.binary(max_size=60)),
    "query": queries,
    "headers": st.lists(st.one_of(plain_headers, credential_headers), max_size=10),
    "dup": st.lists(credential_headers, max_size=3),  # credentials repeated under one name
    "traceparent": st.lists(traceparents, max_size=2),
    "chunks": st.lists(st.one_of(st.binary(max_size=256), huge), max_size=6),
})
frames = st.one_of(
    st.text(max_size=100).map(lambda t: {"type": "websocket.receive", "text": t}),
    st.binary(max_size=200).map(lambda b: {"type": "websocket.receive", "bytes": b}),
    huge.map(lambda b: {"type": "websocket.receive", "bytes": b}),
    st.just({"type": "websocket.receive", "text": "bye"}),
)
ws_sessions = st.fixed_dictionaries({
    "kind": st.just("websocket"),
    "path": paths,
    "headers": st.lists(st.one_of(plain_headers, credential_headers), max_size=6),
    "traceparent": st.lists(traceparents, max_size=1),
    "frames": st.lists(frames, max_size=6),
})
batches = st.lists(st.one_of(http_requests, ws_sessions), min_size=BATCH, max_size=BATCH)


# -- the harness ---------------------------------------------------------------------------
def _scope(req: dict[str, Any]) -> dict[str, Any]:
    headers = [*req["headers"], *req.get("dup", ()),
               *((b"traceparent", t) for t in req["traceparent"])]
    if req["kind"] == "websocket":
        scope = make_scope("GET", req["path"], headers=headers, scope_type="websocket")
        scope.pop("method")
        scope["scheme"] = "ws"
        scope["subprotocols"] = []
        return scope
    return make_scope(req["method"], req["path"], query=req["query"], headers=headers,
                      raw_path=req["raw_path"])


async def _run(application: Any, req: dict[str, Any]) -> Any:
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()
    if req["kind"] == "websocket":
        incoming = [{"type": "websocket.connect"}, *req["frames"],
                    {"type": "websocket.disconnect", "code": 1000}]
    else:
        chunks = req["chunks"] or [b""]
        incoming = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        if incoming:
            return dict(incoming.pop(0))
        await done.wait()  # the client stays until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    try:
        await application(_scope(req), receive, send)
    except AppError as exc:
        return ("raised", str(exc), sent)
    return sent


def _without_trace_id(outcome: Any) -> Any:
    messages = outcome[2] if isinstance(outcome, tuple) else outcome
    out = []
    for message in messages:
        if message["type"] in ("http.response.start", "websocket.accept"):
            headers = list(message.get("headers") or [])
            kept = [(k, v) for k, v in headers if k != b"x-trace-id"]
            assert len(headers) - len(kept) <= 1
            message = {**message, "headers": kept}
        out.append(message)
    return (*outcome[:2], out) if isinstance(outcome, tuple) else out


def _traced(req: dict[str, Any]) -> bool:
    return req["path"] != "/healthz"


@pytest.mark.slow
def test_hostile_requests_responses_identical_and_no_secret_stored(reset_tracer) -> None:
    # An in-process loop produces traces faster than any export can write them; the bounded
    # queue would drop (and count) the excess. This test counts traces exactly, so it gives
    # the queue room for the whole run (overflow has its own test, test_overflow.py).
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="100000")
    traced = TracingMiddleware(app, config=CONFIG)
    counts = {"requests": 0, "websocket": 0, "traced": 0}
    continued: set[int] = set()  # remote trace ids continued through a valid traceparent
    guard_before = dict(guard.counts)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(batch=batches)
    def property_holds(batch: list[dict[str, Any]]) -> None:
        async def both() -> list[tuple[Any, Any]]:
            return [(await _run(app, req), await _run(traced, req)) for req in batch]

        for req, (bare, with_tracing) in zip(batch, asyncio.run(both()), strict=True):
            assert _without_trace_id(with_tracing) == bare
            counts["requests"] += 1
            counts["websocket"] += req["kind"] == "websocket"
            if _traced(req):
                remote = _remote_parent(req)
                if remote is None:
                    counts["traced"] += 1
                else:
                    continued.add(remote[0])
        assert Seen.errors == []
        assert dict(guard.counts) == guard_before  # nothing inside routetrace failed

    property_holds()
    assert counts["requests"] >= EXAMPLES * BATCH
    # One fixed request, so the positive control of the scan below never depends on luck.
    control = {"kind": "http", "method": "POST", "path": "/math/add", "raw_path": None,
               "query": b"token=" + SECRET + b"q", "chunks": [b"{}"], "traceparent": [],
               "headers": [(b"user-agent", VISIBLE + b"ua"), (b"authorization", SECRET + b"a"),
                           (b"Cookie", SECRET + b"c"), (b"X-Api-Key", SECRET + b"k")],
               "dup": [(b"authorization", SECRET + b"b")]}
    asyncio.run(_run(traced, control))
    counts["traced"] += 1
    print(f"hostile: {counts}")

    # Every traced request/session stored exactly once (the bare runs made no traces);
    # requests continuing one remote trace are parts of that one trace.
    stored = _all_traces()
    assert len(stored) == counts["traced"] + len(continued), (
        routetrace.get_export_stats())
    assert len({t.info.trace_id for t in stored}) == len(stored)

    # No secret anywhere in the store's files; the visible marker is (the scan works).
    blob = b"".join(p.read_bytes() for p in _store_files(tracer))
    assert SECRET not in blob
    assert VISIBLE in blob


def _remote_parent(req: dict[str, Any]) -> tuple[int, int] | None:
    for name, value in _scope(req)["headers"]:
        if name == b"traceparent":
            return parse_traceparent(value)
    return None


def _all_traces() -> list[routetrace.Trace]:
    traces_of()  # flush
    out = []
    for experiment in ("hostile", "chat", "math"):
        out += routetrace.search_traces(experiment, max_results=1_000_000, return_type="list")
    return out


def _store_files(tracer) -> list[Path]:
    db = Path(tracer.backend.db_path)
    files = [p for p in db.parent.iterdir() if p.is_file()]
    assert db in files
    return files
