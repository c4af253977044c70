"""What the request path keeps, and what the export worker builds from it.

The request path only stores references (the scope or environ, the response status and header
list, body chunks up to the cap) on an :class:`Exchange`. On the export worker,
:meth:`Exchange.facts` turns them into the :class:`~routetrace.middleware.facts.RequestFacts`
that may be stored (kept headers decoded, credentials and secret keys replaced, the query
redacted, captured bodies decoded and scrubbed), and :func:`~routetrace.middleware.facts.apply`
fills the root span from them (calling the exchange: it is the root span's ``_deferred`` hook,
run once when the worker builds the trace).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from routetrace.middleware import frameworks
from routetrace.middleware.facts import RequestFacts, apply
from routetrace.middleware.guard import report
from routetrace.middleware.headers import environ_headers, header_filter, scan, text
from routetrace.middleware.redact import REDACTED, parse_json, scrub_pairs, scrub_text
from routetrace.routing.scrub import DEFAULT_POLICY, KeyPolicy

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan
    from routetrace.routing.table import RouteTable, Rule

__all__ = ["REDACTED", "Exchange", "parse_traceparent", "redact_query"]

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


def redact_query(query: str, keys: frozenset[str], policy: KeyPolicy = DEFAULT_POLICY) -> str:
    """The query string with the values of sensitive keys replaced by ``REDACTED``: keys in
    ``keys`` (lower-case) and keys ``policy`` denies."""
    return scrub_pairs(query, policy, keys)


def _body(data: bytes, size: int, cap: int, content_type: str, policy: KeyPolicy) -> Any:
    """A captured body as stored: parsed JSON or text, the values of secret keys replaced."""
    truncated = size > cap
    if not truncated and "json" in content_type:
        try:
            return parse_json(data, policy)
        except (ValueError, RecursionError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (truncated and exc.start >= len(data) - 3):  # not just a cut multi-byte char
            return f"<{size} bytes of binary data>"
        text = data[: exc.start].decode("utf-8")
    text = scrub_text(text, content_type, policy)
    if truncated:
        text += f"... [truncated: {size} bytes in total, {cap} kept]"
    return text


class Exchange:
    """One request's capture: written on the request path, read by :meth:`facts` on the worker."""

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
    def facts(self) -> RequestFacts:
        """What :func:`~routetrace.middleware.facts.apply` needs, with nothing secret left.

        Runs on the export worker for every request: each header list is read once, the
        query string redacted, and a captured body decoded and scrubbed here, since its
        secrets can only be found by parsing it.
        """
        table, rule = self.table, self.rule
        policy = rule.key_policy or table.key_policy
        spec = header_filter(rule.capture_headers, table.redact_headers, policy)
        first: dict[str, str] = {}  # host, user-agent and content-type, for attributes
        if self.scope is not None:
            scope = self.scope
            kind = "websocket" if scope.get("type") == "websocket" else "http"
            query = scope.get("query_string")
            scheme = scope.get("scheme") or ("ws" if kind == "websocket" else "http")
            client = scope.get("client")
            protocol = scope.get("http_version")
            request = scan(scope.get("headers") or (), spec, first)
            template = frameworks.asgi_route(scope, self.root_path)
        else:
            env = self.environ
            kind = "http"
            query = env.get("QUERY_STRING")
            scheme = env.get("wsgi.url_scheme", "http")
            client = (env.get("REMOTE_ADDR"), env.get("REMOTE_PORT"))
            protocol = env.get("SERVER_PROTOCOL", "").partition("/")[2] or None
            request = scan(environ_headers(env), spec, first)
            template = self.route or frameworks.wsgi_route(env)
        if query:
            query = redact_query(text(query), table.redact_query, policy)
        response_first: dict[str, str] = {}
        response = scan(self.response_headers or (), spec, response_first)
        request_body = response_body = None
        cap = rule.capture_body
        if cap:
            if self.req_body is not None:
                request_body = _body(b"".join(self.req_body)[:cap], self.req_size, cap,
                                     first.get("content-type", ""), policy)
            if self.resp_body is not None:
                response_body = _body(b"".join(self.resp_body)[:cap], self.resp_size, cap,
                                      response_first.get("content-type", ""), policy)
        # Positional, in field order: this runs for every request, and binding twenty
        # keyword arguments costs more than building the record itself.
        return RequestFacts(
            rule, kind, self.method, self.path, query or "", scheme, client, protocol, template,
            request, first.get("host"), first.get("user-agent"), self.status, response,
            request_body, None if self.req_body is None else self.req_size,
            response_body, None if self.resp_body is None else self.resp_size,
            self.disconnected, table.service_name,
        )

    def __call__(self, span: LiveSpan) -> None:
        """The deferred half of the capture, done at once.

        The exchange itself is the span's ``_deferred`` hook: a bound method would be one
        more object per request for the cyclic garbage collector to track.
        """
        apply(span, self.facts())
