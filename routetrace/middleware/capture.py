"""What the request path keeps, and what the export worker builds from it.

The request path only stores references (the scope or environ, the response status and header
list, body chunks up to the cap) on an :class:`Exchange`. On the export worker,
:meth:`Exchange.facts` keeps what may be stored (kept headers, credentials and secret keys
replaced, the query redacted, captured bodies decoded and scrubbed); :func:`apply` decodes the
headers and fills inputs, outputs and OpenTelemetry HTTP semantic-convention attributes
(calling the exchange: it is the root span's ``_deferred`` hook, run once when the worker
builds the trace).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from routetrace.core.serialize import clean
from routetrace.middleware import frameworks
from routetrace.middleware.redact import REDACTED, parse_json, scrub_pairs, scrub_text
from routetrace.routing.scrub import DEFAULT_POLICY, KeyPolicy

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan
    from routetrace.routing.table import RouteTable, Rule

__all__ = ["REDACTED", "Exchange", "apply", "parse_traceparent", "redact_query"]

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


_FIRST = {"host": 0, "user-agent": 1, "content-type": 2}
_REDACTED_BYTES = REDACTED.encode("ascii")
_filters: dict[tuple[frozenset[str] | None, frozenset[str], KeyPolicy],
               tuple[frozenset[Any] | None, Any]] = {}


class _SecretNames:
    """``name in redact`` for any header name when every header is captured: the named ones,
    and those the key policy denies (a header is a key like any other)."""

    __slots__ = ("names", "policy")

    def __init__(self, names: frozenset[Any], policy: KeyPolicy) -> None:
        self.names = names
        self.policy = policy

    def __contains__(self, name: Any) -> bool:
        return name in self.names or self.policy.denies(_text(name))


def _filter(wanted: frozenset[str] | None, redact: frozenset[str],
            policy: KeyPolicy) -> tuple[frozenset[Any] | None, Any]:
    """``(keep, redact)`` name sets for :func:`_kept`, as both ``str`` and ``bytes``.

    ``keep`` is None when every header is captured; ``redact`` is None when no kept header
    can need it (the usual case: one set lookup a header, nothing more).
    """
    found = _filters.get((wanted, redact, policy))
    if found is None:
        redact_any = frozenset(redact) | {n.encode("latin-1") for n in redact}
        if wanted is None:
            found = (None, _SecretNames(redact_any, policy))
        else:
            names = set(wanted) | set(_FIRST)
            secret = {n for n in names if n in redact or policy.denies(n)}
            secret_any = frozenset(secret) | {n.encode("latin-1") for n in secret}
            keep = frozenset(names) | {n.encode("latin-1") for n in names}
            found = (keep, secret_any or None)
        _filters[(wanted, redact, policy)] = found
    return found


def _kept(pairs: Iterable[Any], keep: frozenset[Any] | None, redact: Any) -> list[Any]:
    """The header pairs the capture reads, credentials already replaced: what may be stored.

    Nothing is decoded here (this runs on the export worker for every request); names are
    matched as servers send them (lower-case, as ASGI asks) and lower-cased only when they
    do not match as they are.
    """
    out = []
    try:
        for pair in pairs:
            name = pair[0]
            if keep is None or name not in keep:
                name = name.lower()
                if keep is not None and name not in keep:
                    continue
                pair = (name, pair[1])
            if redact is not None and name in redact:
                pair = (name, _REDACTED_BYTES)
            out.append(pair)
    except (TypeError, AttributeError):  # names that are neither bytes nor str
        return _kept([(_plain_name(p[0]), p[1]) for p in pairs], keep, redact)
    return out


def _plain_name(name: Any) -> bytes | str:
    if isinstance(name, (bytes, str)):
        return name
    if isinstance(name, (bytearray, memoryview)):
        return bytes(name)
    return str(name)


def _text(value: Any) -> str:
    if value.__class__ is bytes:
        return value.decode("latin-1")
    if value.__class__ is str:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def _scan(pairs: Iterable[Any], wanted: frozenset[str] | None
          ) -> tuple[dict[str, str], list[str | None]]:
    """Decode the pairs :func:`_kept` left: the captured headers (repeated names joined with
    ", "), and the first host, user-agent and content-type, which attributes use."""
    captured: dict[str, str] = {}
    first: list[str | None] = [None, None, None]
    for key, value in pairs:
        name = _text(key).lower()
        value = _text(value)
        index = _FIRST.get(name)
        if index is not None and first[index] is None:
            first[index] = value
        if wanted is None or name in wanted:
            previous = captured.get(name)
            if previous is None:
                captured[name] = value
            elif not (value == REDACTED and previous == REDACTED):
                captured[name] = f"{previous}, {value}"
    return captured, first


def _content_type(pairs: Iterable[Any]) -> str:
    for name, value in pairs:
        if _text(name).lower() == "content-type":
            return _text(value)
    return ""


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
    """One request's captured facts: written on the request path, read by :meth:`build`."""

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

    # -- on the export worker --------------------------------------------------------------
    def facts(self) -> tuple:
        """What :func:`apply` needs, with nothing secret left in it.

        Runs on the export worker for every request, so it does as little as it can: no
        decoding of headers, just references and the headers that are kept (uncaptured ones
        dropped, credentials and secret keys replaced, the query string redacted). A captured
        body is decoded and scrubbed here, since its secrets can only be found by parsing it.
        Element 0 is the rule.
        """
        table, rule = self.table, self.rule
        policy = rule.key_policy or table.key_policy
        keep, redact = _filter(rule.capture_headers, table.redact_headers, policy)
        if self.scope is not None:
            scope = self.scope
            kind = "websocket" if scope.get("type") == "websocket" else "http"
            query = scope.get("query_string")
            scheme = scope.get("scheme") or ("ws" if kind == "websocket" else "http")
            client = scope.get("client")
            protocol = scope.get("http_version")
            request = _kept(scope.get("headers") or (), keep, redact)
            template = frameworks.asgi_route(scope, self.root_path)
        else:
            env = self.environ
            kind = "http"
            query = env.get("QUERY_STRING")
            scheme = env.get("wsgi.url_scheme", "http")
            client = (env.get("REMOTE_ADDR"), env.get("REMOTE_PORT"))
            protocol = env.get("SERVER_PROTOCOL", "").partition("/")[2] or None
            request = _kept(_environ_headers(env), keep, redact)
            template = self.route or frameworks.wsgi_route(env)
        if query:
            query = redact_query(_text(query), table.redact_query, policy)
        response = self.response_headers
        if response:
            response = _kept(response, keep, redact)
        request_body = response_body = None
        cap = rule.capture_body
        if cap:
            if self.req_body is not None:
                request_body = _body(b"".join(self.req_body)[:cap], self.req_size, cap,
                                     _content_type(request), policy)
            if self.resp_body is not None:
                response_body = _body(b"".join(self.resp_body)[:cap], self.resp_size, cap,
                                      _content_type(response or ()), policy)
        return (
            rule, kind, self.method, self.path, query or "", scheme, client, protocol, template,
            request, self.status, response or None,
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


def _environ_headers(environ: Any) -> list[tuple[str, str]]:
    pairs = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            pairs.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            pairs.append((key.replace("_", "-").lower(), value))
    return pairs


def apply(span: LiveSpan, facts: Sequence[Any]) -> None:
    """Fill the root span's inputs, outputs, attributes, name and tags from :meth:`facts`."""
    (rule, kind, method, path, query, scheme, client, protocol, template, request_pairs,
     status, response_pairs, request_body, request_size, response_body, response_size,
     disconnected, service_name) = facts
    wanted = rule.capture_headers
    request_headers, (host, user_agent, _) = _scan(request_pairs or (), wanted)
    response_headers, _ = _scan(response_pairs or (), wanted)
    client_address = client_port = None
    if client and client[0]:
        client_address = str(client[0])
        if client[1]:
            try:
                client_port = int(client[1])
            except (TypeError, ValueError):
                pass
    if protocol is not None:
        protocol = str(protocol)
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
