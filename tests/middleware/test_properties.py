"""Property: whatever the request, the response is byte for byte the app's own.

    ROUTETRACE_HYPOTHESIS_EXAMPLES=2000 .venv/bin/pytest tests/middleware/test_properties.py
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routetrace.middleware import TracingMiddleware, guard
from tests.conftest import traces_of
from tests.middleware.conftest import drive, make_scope

EXAMPLES = int(os.environ.get("ROUTETRACE_HYPOTHESIS_EXAMPLES", "400"))


class AppError(Exception):
    pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes a digest of everything it saw; status, streaming and failure depend on it."""
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], scope["raw_path"], scope["query_string"]):
        digest.update(repr(part).encode())
    for name, value in scope["headers"]:
        digest.update(name + b":" + value + b"\n")
    more = True
    while more:
        message = await receive()
        digest.update(message.get("body", b""))
        more = message.get("more_body", False)
    value = digest.digest()
    if value[0] < 8:
        raise AppError(value.hex())
    status = (200, 201, 204, 304, 400, 404, 500, 503)[value[1] % 8]
    headers = [(b"content-type", b"application/octet-stream"), (b"x-digest", value.hex().encode()),
               (b"set-cookie", b"s=1")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": value[:16], "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    await send({"type": "http.response.body", "body": value[16:]})


VALID_TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
traceparents = st.one_of(
    st.just(VALID_TRACEPARENT),
    st.binary(max_size=70),
    st.text(alphabet="0123456789abcdefABCDEF-", max_size=60).map(str.encode),
    st.builds(lambda a, b: b"00-" + a + b"-" + b + b"-01",
              st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16)),
)
header_names = st.one_of(
    st.sampled_from([b"user-agent", b"content-type", b"authorization", b"cookie", b"host",
                     b"x-api-key", b"content-length"]),
    st.binary(min_size=1, max_size=20),
)
headers = st.lists(st.tuples(header_names, st.binary(max_size=200)), max_size=8)
paths = st.one_of(
    st.sampled_from(["/", "/chat/1", "/math/add", "/healthz", "/chat/x/y", "/static/a.js"]),
    st.text(st.characters(blacklist_categories=()), max_size=40).map(lambda s: "/" + s),
)
configs = st.fixed_dictionaries({
    "capture_headers": st.sampled_from([["*"], ["user-agent"], []]),
    "capture_body": st.one_of(st.booleans(), st.integers(0, 64)),
    "trace_id_header": st.sampled_from(["", "x-trace-id"]),
    "exclude": st.just(["/healthz"]),
    "routes": st.just([
        {"path": "/chat/**", "experiment": "chat", "capture_body": 10},
        {"path": "/math/{op}", "methods": ["POST"], "experiment": "math"},
        {"path": "/static/*", "sample_rate": 0.5},
    ]),
})


async def outcome(application: Any, scope: dict[str, Any], chunks: list[bytes]) -> Any:
    try:
        sent = await drive(application, scope, chunks or [b""])
    except AppError as exc:
        return ("raised", str(exc))
    return sent.messages


def without_trace_id(messages: Any, header: str) -> Any:
    if not header or not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message["headers"] if k != header.encode()]
            # once when traced; absent when excluded or sampled out
            assert len(message["headers"]) - len(kept) <= 1
            message = {**message, "headers": kept}
        out.append(message)
    return out


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-WEIRD"]),
    path=paths,
    raw_path=st.binary(max_size=40),
    query=st.binary(max_size=40),
    request_headers=headers,
    traceparent=st.one_of(st.none(), traceparents),
    chunks=st.lists(st.binary(max_size=64), max_size=4),
    config=configs,
)
def test_response_is_byte_for_byte_the_apps(
    method: str, path: str, raw_path: bytes, query: bytes,
    request_headers: list[tuple[bytes, bytes]], traceparent: bytes | None,
    chunks: list[bytes], config: dict[str, Any],
) -> None:
    if traceparent is not None:
        request_headers = [*request_headers, (b"traceparent", traceparent)]
    traced = TracingMiddleware(app, config=config)

    def scope() -> dict[str, Any]:
        return make_scope(method, path, query=query, headers=request_headers,
                          raw_path=raw_path)

    async def both() -> tuple[Any, Any]:
        return (await outcome(app, scope(), list(chunks)),
                await outcome(traced, scope(), list(chunks)))

    errors_before = sum(guard.counts.values())
    bare, with_tracing = asyncio.run(both())
    assert without_trace_id(with_tracing, config["trace_id_header"]) == bare
    assert sum(guard.counts.values()) == errors_before  # nothing inside routetrace failed


def test_every_generated_trace_was_stored() -> None:
    """The traces of weird requests are stored too (nothing stuck in a failing batch)."""
    asyncio.run(drive(TracingMiddleware(app), make_scope(
        "GET", "/caf\udce9", headers=[(b"x", b"\xff")], raw_path=b"/caf\xe9")))
    assert len(traces_of()) == 1
