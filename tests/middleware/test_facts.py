"""The request's facts reach the export worker as a named record, nothing secret left in it."""

from __future__ import annotations

import dataclasses
from typing import Any

from routetrace.core.otel_bridge import current_request
from routetrace.middleware import TracingMiddleware
from routetrace.middleware.facts import RequestFacts
from tests.middleware.conftest import call, only_trace


def test_the_worker_reads_the_request_as_a_named_record_with_secrets_replaced() -> None:
    exchanges: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        exchanges.append(current_request.get())
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain"), (b"set-cookie", b"s=1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = TracingMiddleware(app, config={
        "capture_headers": ["user-agent", "authorization", "set-cookie"],
        "routes": [{"path": "/chat/{room}", "experiment": "chat"}]})
    call(mw, "GET", "/chat/7", query=b"q=1&token=abc",
         headers=[(b"user-agent", b"probe/1"), (b"authorization", b"Bearer s3cr3t"),
                  (b"x-other", b"o")])
    facts = exchanges[0].facts()

    assert isinstance(facts, RequestFacts)
    assert not isinstance(facts, tuple)  # read by name only: nothing can unpack it by position
    fields = {f.name: getattr(facts, f.name) for f in dataclasses.fields(facts)}
    assert fields.pop("rule").pattern == "/chat/{room}"
    assert fields == {
        "kind": "http", "method": "GET", "path": "/chat/7", "query": "q=1&token=REDACTED",
        "scheme": "http", "client": ("127.0.0.1", 50000), "protocol": "1.1", "template": None,
        "request_headers": {"user-agent": "probe/1", "authorization": "REDACTED"},
        "host": "testserver", "user_agent": "probe/1", "status": 201,
        "response_headers": {"set-cookie": "REDACTED"},
        "request_body": None, "request_size": None, "response_body": None,
        "response_size": None, "disconnected": False, "service_name": None,
    }
    root = only_trace("chat").data.spans[0]
    assert root.name == "GET /chat/{room}"
    assert root.inputs["headers"] == facts.request_headers
    assert root.outputs == {"status_code": 201, "headers": facts.response_headers}
    assert root.attributes["user_agent.original"] == "probe/1"
    assert root.attributes["server.address"] == "testserver"
