"""What the request path keeps, and what the export worker builds from it.

The request path only stores references (the scope or environ, the response status and header
list, body chunks up to the cap) on an :class:`Exchange`. The exchange is the root span's
``_deferred`` hook: on the export worker, :func:`~routetrace.middleware.facts.fill` turns it
into the root span's values in one pass (kept headers decoded, credentials and secret keys
replaced, the query redacted, captured bodies decoded and scrubbed).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from routetrace.middleware.facts import fill
from routetrace.middleware.guard import report
from routetrace.middleware.redact import REDACTED

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan
    from routetrace.routing.table import RouteTable, Rule

__all__ = ["REDACTED", "Exchange", "parse_traceparent"]

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def parse_traceparent(value: bytes) -> tuple[int, int] | None:
    """``(trace_id, parent_span_id)`` from a W3C ``traceparent``, or None when it is malformed.

    Strict on purpose (version 00, lowercase hex, no all-zero ids): a header we cannot trust
    starts a new trace instead of grafting this request onto a garbage id.
    """
    m = _TRACEPARENT.fullmatch(value.strip(b" \t"))
    if m is None:
        return None
    trace_id = int(m.group(1), 16)
    span_id = int(m.group(2), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id


class Exchange:
    """One request's capture: written on the request path, read by :func:`.facts.fill` on the
    worker."""

    # Class-level defaults: the request path only assigns what it has, allocating no more.
    scope: Any = None
    environ: Any = None
    root_path = ""
    span: LiveSpan
    status: int | None = None
    response_headers: Any = None
    req_body: list[bytes] | None = None
    req_size = 0
    resp_body: list[bytes] | None = None
    resp_size = 0
    ended = False
    disconnected = False
    route: str | None = None  # WSGI: read at start_response, while Flask's request is alive

    def __init__(self, table: RouteTable, rule: Rule, method: str, path: str) -> None:
        self.table = table
        self.rule = rule
        self.method = method
        self.path = path

    # -- request path helpers (cheap) ------------------------------------------------------
    def keep_request_chunk(self, chunk: bytes) -> None:
        cap = self.rule.capture_body
        if self.req_body is None:
            self.req_body = []
        if self.req_size < cap:
            self.req_body.append(chunk[: cap - self.req_size])
        self.req_size += len(chunk)

    def keep_response_chunk(self, chunk: bytes) -> None:
        cap = self.rule.capture_body
        if self.resp_body is None:
            self.resp_body = []
        if self.resp_size < cap:
            self.resp_body.append(chunk[: cap - self.resp_size])
        self.resp_size += len(chunk)

    # -- an exception on the request path ------------------------------------------------
    # id() of the exception recorded by caught(), not the exception: its traceback holds the
    # frames of the whole request, the response iterable among them, and the trace would hold
    # them all until it is exported.
    _caught = 0

    def end(self) -> None:
        """End the request's span (each middleware knows when and with which status)."""
        raise NotImplementedError

    def caught(self, exc: BaseException) -> None:
        """The framework caught ``exc`` and answers an error page (Flask's and Django's
        ``got_request_exception``): record it on the request's span."""
        if self.ended or id(exc) == self._caught:
            return
        self._caught = id(exc)
        try:
            self.span.record_exception(exc)
        except Exception:
            report("recording an exception")

    def fail(self, exc: BaseException) -> None:
        """The app raised ``exc``: record it, unless already recorded, and end the span."""
        if self.ended:
            return  # e.g. a background task failing after the response: not this request's
        if id(exc) != self._caught:  # a framework that re-raises what it reported
            try:
                self.span.record_exception(exc)
            except Exception:
                report("recording an exception")
        self.end()

    # -- on the export worker --------------------------------------------------------------
    def __call__(self, span: LiveSpan) -> dict[str, Any] | None:
        """The deferred half of the capture, done at once: see :func:`.facts.fill`.

        The exchange itself is the span's ``_deferred`` hook: a bound method would be one
        more object per request for the cyclic garbage collector to track.
        """
        return fill(span, self)
