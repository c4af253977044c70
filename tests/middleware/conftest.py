"""A raw, in-memory ASGI driver: the tests see every message, byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import routetrace
from tests.conftest import traces_of


@dataclass
class Sent:
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return list(start.get("headers", []))

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages
                        if m["type"] == "http.response.body")


def make_scope(method: str = "GET", path: str = "/", *, query: bytes = b"",
               headers: Sequence[tuple[bytes, bytes]] = (), raw_path: bytes | None = None,
               scope_type: str = "http") -> dict[str, Any]:
    return {
        "type": scope_type, "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8", "replace"),
        "root_path": "", "query_string": query,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }


async def drive(app: Any, scope: dict[str, Any], chunks: Sequence[bytes] = (b"",), *,
                disconnect_early: bool = False) -> Sent:
    """Run one request: body ``chunks`` in, every sent message out. After the body, receive
    blocks until the response is complete (then reports a disconnect), or reports the
    disconnect at once with ``disconnect_early`` (a client that went away)."""
    sent = Sent()
    done = asyncio.Event()
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if not disconnect_early:
            await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    return sent


def call(app: Any, method: str = "GET", path: str = "/", chunks: Sequence[bytes] = (b"",),
         **kwargs: Any) -> Sent:
    disconnect_early = kwargs.pop("disconnect_early", False)
    return asyncio.run(drive(app, make_scope(method, path, **kwargs), chunks,
                             disconnect_early=disconnect_early))


def only_trace(experiment: str | None = None) -> routetrace.Trace:
    traces = traces_of(experiment)
    assert len(traces) == 1, [t.info.tags for t in traces]
    return traces[0]


@pytest.fixture
def hello_app():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})

    return app
