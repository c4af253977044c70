"""What the request path keeps, and what the export worker builds from it.

The request path only stores references (the scope or environ, the response status and header
list, body chunks up to the cap) on an :class:`Exchange`. :meth:`Exchange.build` runs later on
the export worker, as the root span's ``_deferred`` hook: it decodes, redacts, parses JSON and
fills inputs, outputs and OpenTelemetry HTTP semantic-convention attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from routetrace.middleware import frameworks
from routetrace.tracing.serialize import clean

if TYPE_CHECKING:
    from routetrace.routing.table import RouteTable, Rule
    from routetrace.tracing.span import LiveSpan

__all__ = ["REDACTED", "Exchange", "StoredRule", "apply", "parse_traceparent", "redact_query",
           "rule_to_json"]

REDACTED = "REDACTED"  # the placeholder OpenTelemetry's semantic conventions use

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


def redact_query(query: str, keys: frozenset[str]) -> str:
    """The query string with the values of sensitive keys replaced by ``REDACTED``."""
    if not query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, sep, _ = part.partition("=")
        if sep and unquote_plus(name).strip().lower() in keys:
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


_FIRST = {"host": 0, "user-agent": 1, "content-type": 2}
_FIRST_BYTES = {b"host": 0, b"user-agent": 1, b"content-type": 2}
_names_as_bytes: dict[frozenset[str], frozenset[bytes]] = {}


def _scan(pairs: Iterable[tuple[Any, Any]], wanted: frozenset[str] | None,
          redact: frozenset[str]) -> tuple[dict[str, str], list[str | None]]:
    """One pass over a header list (ASGI byte pairs or str pairs, any case): the captured
    headers, redacted, repeated names joined with ", " (set-cookie is redacted anyway); and
    the first host, user-agent and content-type, which attributes use.

    Only the headers kept are decoded: on the export worker, decoding every header of every
    request was a third of the capture's cost.
    """
    captured: dict[str, str] = {}
    first: list[str | None] = [None, None, None]
    wanted_bytes = None
    if wanted is not None:
        wanted_bytes = _names_as_bytes.get(wanted)
        if wanted_bytes is None:
            wanted_bytes = _names_as_bytes[wanted] = frozenset(
                n.encode("latin-1") for n in wanted)
    for key, value in pairs:
        cls = key.__class__
        if cls is bytes or (cls is not str and isinstance(key, (bytearray, memoryview))):
            key = key.lower() if cls is bytes else bytes(key).lower()
            index = _FIRST_BYTES.get(key)
            keep = wanted_bytes is None or key in wanted_bytes
            if index is None and not keep:
                continue
            name = key.decode("latin-1")
        else:
            name = str(key).lower()
            index = _FIRST.get(name)
            keep = wanted is None or name in wanted
            if index is None and not keep:
                continue
        if value.__class__ is bytes:
            value = value.decode("latin-1")
        elif value.__class__ is not str:
            value = (bytes(value).decode("latin-1")
                     if isinstance(value, (bytearray, memoryview)) else str(value))
        if index is not None and first[index] is None:
            first[index] = value
        if keep:
            if name in redact:
                captured[name] = REDACTED
            elif name in captured:
                captured[name] = f"{captured[name]}, {value}"
            else:
                captured[name] = value
    return captured, first


def _body(chunks: list[bytes], size: int, cap: int, content_type: str) -> Any:
    data = b"".join(chunks)[:cap]
    truncated = size > cap
    if not truncated and "json" in content_type:
        try:
            return json.loads(data)
        except ValueError:
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (truncated and exc.start >= len(data) - 3):  # not just a cut multi-byte char
            return f"<{size} bytes of binary data>"
        text = data[: exc.start].decode("utf-8")
    if truncated:
        text += f"... [truncated: {size} bytes in total, {cap} kept]"
    return text


class Exchange:
    """One request's captured facts: written on the request path, read by :meth:`build`."""

    # Class-level defaults: the request path only assigns what it has (a few µs matter here).
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

    # -- on the export worker --------------------------------------------------------------
    def _request_headers(self) -> tuple[dict[str, str], list[str | None]]:
        """Captured request headers, and the first host, user-agent and content-type."""
        if self.scope is not None:
            return _scan(self.scope.get("headers") or (), self.rule.capture_headers,
                         self.table.redact_headers)
        pairs = []
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                pairs.append((key[5:].replace("_", "-"), str(value)))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                pairs.append((key.replace("_", "-"), str(value)))
        return _scan(pairs, self.rule.capture_headers, self.table.redact_headers)

    def _response_headers(self) -> tuple[dict[str, str], list[str | None]]:
        return _scan(self.response_headers or (), self.rule.capture_headers,
                     self.table.redact_headers)

    def template(self) -> str | None:
        """The framework's route template, when it exposed one."""
        if self.scope is not None:
            return frameworks.asgi_route(self.scope, self.root_path)
        return self.route or frameworks.wsgi_route(self.environ)

    def facts(self) -> tuple:
        """What :func:`apply` needs, as plain data: decoded, filtered and redacted here.

        Runs on the export worker. The result holds no reference to the scope or environ
        and no secret (credentials are redacted, uncaptured headers dropped), so a store may
        keep it as it is and build the span's inputs and attributes when first read
        (:mod:`routetrace.tracing.snapshot`). Element 0 is the rule; the rest is JSON.
        """
        table, rule = self.table, self.rule
        request_headers, first = self._request_headers()
        if self.scope is not None:
            scope = self.scope
            kind = "websocket" if scope.get("type") == "websocket" else "http"
            query = bytes(scope.get("query_string") or b"").decode("latin-1")
            scheme = scope.get("scheme") or ("ws" if kind == "websocket" else "http")
            client = scope.get("client")
            protocol = scope.get("http_version")
        else:
            env = self.environ
            kind = "http"
            query = env.get("QUERY_STRING", "")
            scheme = env.get("wsgi.url_scheme", "http")
            client = (env.get("REMOTE_ADDR"), env.get("REMOTE_PORT"))
            protocol = env.get("SERVER_PROTOCOL", "").partition("/")[2] or None
        if query:
            query = redact_query(query, table.redact_query)
        client_address = client_port = None
        if client and client[0]:
            client_address = str(client[0])
            if client[1]:
                try:
                    client_port = int(client[1])
                except (TypeError, ValueError):
                    pass
        response_headers, response_first = self._response_headers()
        request_body = response_body = None
        if rule.capture_body:
            if self.req_body is not None:
                request_body = _body(self.req_body, self.req_size, rule.capture_body,
                                     first[2] or "")
            if self.resp_body is not None:
                response_body = _body(self.resp_body, self.resp_size, rule.capture_body,
                                      response_first[2] or "")
        return (
            rule, kind, self.method, self.path, query, scheme, client_address, client_port,
            None if protocol is None else str(protocol), self.template(),
            request_headers or None, first[0], first[1],
            self.status, response_headers or None,
            request_body, None if self.req_body is None else self.req_size,
            response_body, None if self.resp_body is None else self.resp_size,
            self.disconnected, table.service_name,
        )

    def build(self, span: LiveSpan) -> None:
        """The deferred half of the capture, done at once."""
        apply(span, self.facts())

    def __call__(self, span: LiveSpan) -> None:
        # The exchange itself is the span's ``_deferred`` hook: a bound method would be one
        # more object per request for the cyclic garbage collector to track.
        self.build(span)


def apply(span: LiveSpan, facts: Sequence[Any]) -> None:
    """Fill the root span's inputs, outputs, attributes, name and tags from :meth:`facts`.

    ``facts[0]`` is the rule, or what a store kept of it (see :class:`StoredRule`).
    """
    (rule, kind, method, path, query, scheme, client_address, client_port, protocol,
     template, request_headers, host, user_agent, status, response_headers, request_body,
     request_size, response_body, response_size, disconnected, service_name) = facts
    method, path = clean(method), clean(path)
    inputs: dict[str, Any] = {"method": method, "path": path}
    if query:
        inputs["query"] = query
    if request_headers:
        inputs["headers"] = request_headers
    if rule.capture_body and request_size is not None:
        inputs["body"] = request_body
    span.set_inputs(inputs)

    outputs: dict[str, Any] = {}
    if status is not None:
        outputs["status_code"] = status
    if response_headers:
        outputs["headers"] = response_headers
    if rule.capture_body and response_size is not None:
        outputs["body"] = response_body
    span.set_outputs(outputs)

    if template:
        template = clean(template)
    route = template or (None if rule.is_default or "*" in rule.pattern else rule.pattern)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": scheme,
    }
    if route:
        attributes["http.route"] = route
    if query:
        attributes["url.query"] = query
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 500:
            attributes["error.type"] = str(status)
    if client_address:
        attributes["client.address"] = client_address
        if client_port:
            attributes["client.port"] = client_port
    if host:
        address, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not address or not port.isdigit():
            address, port = host, ""
        attributes["server.address"] = address
        if port:
            attributes["server.port"] = int(port)
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent
    if protocol:
        attributes["network.protocol.version"] = protocol
    if rule.capture_body:
        if request_size is not None:
            attributes["http.request.body.size"] = request_size
        if response_size is not None:
            attributes["http.response.body.size"] = response_size
    if disconnected:
        attributes["routetrace.client_disconnected"] = True
    if not rule.is_default:
        attributes["routetrace.rule"] = rule.pattern
    if service_name:
        attributes["service.name"] = service_name
    span.set_attributes(attributes)

    prefix = "WEBSOCKET" if kind == "websocket" else method
    span.update_name(f"{prefix} {route or rule.pattern}" if (route or not rule.is_default)
                     else prefix)
    tags = rule.trace_tags
    live = span.trace
    if live.tags:
        tags.update(live.tags)  # the application's own tags win
    live.set_tags(tags)


class StoredRule:
    """What :func:`apply` reads of a rule, as a store keeps it (:func:`rule_to_json`)."""

    __slots__ = ("capture_body", "is_default", "pattern", "tags")

    def __init__(self, data: dict[str, Any]) -> None:
        self.capture_body = int(data.get("capture_body") or 0)
        self.is_default = bool(data.get("is_default"))
        self.pattern = str(data.get("pattern") or "")
        self.tags = dict(data.get("tags") or {})

    @property
    def trace_tags(self) -> dict[str, str]:
        return dict(self.tags)


def rule_to_json(rule: Rule) -> dict[str, Any]:
    return {"capture_body": rule.capture_body, "is_default": rule.is_default,
            "pattern": rule.pattern, "tags": rule.trace_tags}
