"""The facts of one request as a trace may store them, put straight onto its root span.

:func:`fill` runs once per request on the export worker (the exchange is the root span's
deferred hook): it reads each header list once, redacts the query, decodes and scrubs the
captured bodies, and sets the root span's inputs, outputs, OpenTelemetry HTTP
semantic-convention attributes, name and tags, with nothing secret left in any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routetrace.core.serialize import clean
from routetrace.middleware import frameworks
from routetrace.middleware.headers import environ_headers, header_filter, scan, text
from routetrace.middleware.redact import parse_json, scrub_pairs, scrub_text

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan
    from routetrace.routing.scrub import KeyPolicy

__all__ = ["fill"]


def fill(span: LiveSpan, ex: Any) -> dict[str, Any] | None:
    """Set the root span's inputs, outputs, attributes, name and tags from ``ex``, the
    request's :class:`~routetrace.middleware.capture.Exchange` (which imports this module).

    Returns the attributes when the span had none before, so they are the span's attributes
    as built here: plain JSON values of clean text, which the trace's record may take as they
    are (None when the application had set attributes of its own, merged with these).
    """
    table, rule = ex.table, ex.rule
    policy = rule.key_policy or table.key_policy
    spec = header_filter(rule.capture_headers, table.redact_headers, policy)
    first: dict[str, str] = {}  # host, user-agent and content-type, for attributes
    if ex.scope is not None:
        scope = ex.scope
        websocket = scope.get("type") == "websocket"
        query = scope.get("query_string")
        scheme = scope.get("scheme") or ("ws" if websocket else "http")
        client = scope.get("client")
        protocol = scope.get("http_version")
        request_headers = scan(scope.get("headers") or (), spec, first)
        template = frameworks.asgi_route(scope, ex.root_path)
    else:
        env = ex.environ
        websocket = False
        query = env.get("QUERY_STRING")
        scheme = env.get("wsgi.url_scheme", "http")
        client = (env.get("REMOTE_ADDR"), env.get("REMOTE_PORT"))
        protocol = env.get("SERVER_PROTOCOL", "").partition("/")[2] or None
        request_headers = scan(environ_headers(env), spec, first)
        template = ex.route or frameworks.wsgi_route(env)
    response_first: dict[str, str] = {}
    response_headers = scan(ex.response_headers or (), spec, response_first)
    status = ex.status
    cap = rule.capture_body
    method, path = ex.method, ex.path

    inputs: dict[str, Any] = {"method": method, "path": path}
    attributes: dict[str, Any] = {"http.request.method": method, "url.path": path,
                                  "url.scheme": str(scheme)}
    if query:
        query = scrub_pairs(text(query), policy, table.redact_query)
        inputs["query"] = query
    if request_headers:
        inputs["headers"] = request_headers
    outputs: dict[str, Any] = {}
    if status is not None:
        outputs["status_code"] = status
    if response_headers:
        outputs["headers"] = response_headers
    # The body only when the rule captures bodies and the app read (or sent) one.
    if cap and ex.req_body is not None:
        inputs["body"] = _body(b"".join(ex.req_body)[:cap], ex.req_size, cap,
                               first.get("content-type", ""), policy)
    if cap and ex.resp_body is not None:
        outputs["body"] = _body(b"".join(ex.resp_body)[:cap], ex.resp_size, cap,
                                response_first.get("content-type", ""), policy)
    span.set_inputs(inputs)
    span.set_outputs(outputs)

    default = rule.is_default
    route = template or (None if default or "*" in rule.pattern else rule.pattern)
    if route:
        attributes["http.route"] = route
    if query:
        attributes["url.query"] = query
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 500:
            attributes["error.type"] = str(status)
    if client and client[0]:
        attributes["client.address"] = str(client[0])
        if client[1]:
            try:
                attributes["client.port"] = int(client[1])
            except (TypeError, ValueError):
                pass
    host = first.get("host")
    if host:
        address, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not address or not port.isdigit():
            address, port = host, ""
        attributes["server.address"] = address
        if port:
            attributes["server.port"] = int(port)
    user_agent = first.get("user-agent")
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent
    if protocol is not None and str(protocol):
        attributes["network.protocol.version"] = str(protocol)
    if cap:
        if ex.req_body is not None:
            attributes["http.request.body.size"] = ex.req_size
        if ex.resp_body is not None:
            attributes["http.response.body.size"] = ex.resp_size
    if ex.disconnected:
        attributes["routetrace.client_disconnected"] = True
    if not default:
        attributes["routetrace.rule"] = rule.pattern
    if table.service_name:
        attributes["service.name"] = table.service_name

    # Text from the server or the client may hold lone surrogates (non-UTF-8 bytes decoded
    # with ``surrogateescape``): one test of all the attributes' text at once, and only when
    # it fails, each value is cleaned. The inputs and outputs are cleaned as they are encoded.
    if not "".join([v for v in attributes.values() if v.__class__ is str]).isascii():
        for key, value in attributes.items():
            if value.__class__ is str:
                attributes[key] = clean(value)
    prefix = "WEBSOCKET" if websocket else method
    span.update_name(f"{prefix} {route or rule.pattern}" if (route or not default)
                     else prefix)
    tags = rule.trace_tags  # a new dict of text
    live = span.trace
    if live.tags:
        tags.update(live.tags)  # the application's own tags win
    live.tags = tags
    # The span's own dictionary, assigned rather than copied in key by key: on the worker
    # the span has ended and nothing else writes to it.
    own = span._attributes
    if own is None:
        span._attributes = attributes
        return attributes
    own.update(attributes)
    return None


def _body(data: bytes, size: int, cap: int, content_type: str, policy: KeyPolicy) -> Any:
    """A captured body as stored: parsed JSON or text, the values of secret keys replaced."""
    truncated = size > cap
    if not truncated and "json" in content_type:
        try:
            return parse_json(data, policy)
        except (ValueError, RecursionError):
            pass
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (truncated and exc.start >= len(data) - 3):  # not just a cut multi-byte char
            return f"<{size} bytes of binary data>"
        decoded = data[: exc.start].decode("utf-8")
    decoded = scrub_text(decoded, content_type, policy)
    if truncated:
        decoded += f"... [truncated: {size} bytes in total, {cap} kept]"
    return decoded
