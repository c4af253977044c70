"""The facts of one request as a trace may store them, and how they land on its root span.

:meth:`~routetrace.middleware.capture.Exchange.facts` builds a :class:`RequestFacts` on the
export worker (nothing secret left in it); :func:`apply` turns it into the root span's inputs,
outputs, OpenTelemetry HTTP semantic-convention attributes, name and tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routetrace.core.serialize import clean

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan
    from routetrace.routing.table import Rule

__all__ = ["RequestFacts", "apply"]


@dataclass(slots=True)
class RequestFacts:
    """One request or WebSocket session, headers filtered and decoded, secrets replaced."""

    rule: Rule
    kind: str
    """``"http"`` or ``"websocket"``."""
    method: str
    path: str
    query: str
    """Redacted; ``""`` when there is none."""
    scheme: str
    client: Any
    """``(address, port)`` as the server gave it, or None."""
    protocol: Any
    """The HTTP version (``"1.1"``), or None."""
    template: str | None
    """The framework's route template, when it exposes one."""
    request_headers: dict[str, str]
    host: str | None
    user_agent: str | None
    status: int | None
    response_headers: dict[str, str]
    request_body: Any
    request_size: int | None
    """Bytes the app read, or None when the body was not captured."""
    response_body: Any
    response_size: int | None
    """Bytes the app sent, or None when the body was not captured."""
    disconnected: bool
    service_name: str | None


def apply(span: LiveSpan, facts: RequestFacts) -> None:
    """Fill the root span's inputs, outputs, attributes, name and tags from ``facts``."""
    rule, query, status = facts.rule, facts.query, facts.status
    request_size, response_size = facts.request_size, facts.response_size
    client_address = client_port = None
    client = facts.client
    if client and client[0]:
        client_address = str(client[0])
        if client[1]:
            try:
                client_port = int(client[1])
            except (TypeError, ValueError):
                pass
    protocol = facts.protocol
    if protocol is not None:
        protocol = str(protocol)
    method, path = clean(facts.method), clean(facts.path)
    inputs: dict[str, Any] = {"method": method, "path": path}
    if query:
        inputs["query"] = query
    if facts.request_headers:
        inputs["headers"] = facts.request_headers
    if rule.capture_body and request_size is not None:
        inputs["body"] = facts.request_body
    span.set_inputs(inputs)

    outputs: dict[str, Any] = {}
    if status is not None:
        outputs["status_code"] = status
    if facts.response_headers:
        outputs["headers"] = facts.response_headers
    if rule.capture_body and response_size is not None:
        outputs["body"] = facts.response_body
    span.set_outputs(outputs)

    template = facts.template
    if template:
        template = clean(template)
    route = template or (None if rule.is_default or "*" in rule.pattern else rule.pattern)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": facts.scheme,
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
    host = facts.host
    if host:
        address, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not address or not port.isdigit():
            address, port = host, ""
        attributes["server.address"] = address
        if port:
            attributes["server.port"] = int(port)
    if facts.user_agent is not None:
        attributes["user_agent.original"] = facts.user_agent
    if protocol:
        attributes["network.protocol.version"] = protocol
    if rule.capture_body:
        if request_size is not None:
            attributes["http.request.body.size"] = request_size
        if response_size is not None:
            attributes["http.response.body.size"] = response_size
    if facts.disconnected:
        attributes["routetrace.client_disconnected"] = True
    if not rule.is_default:
        attributes["routetrace.rule"] = rule.pattern
    if facts.service_name:
        attributes["service.name"] = facts.service_name
    span.set_attributes(attributes)

    prefix = "WEBSOCKET" if facts.kind == "websocket" else method
    span.update_name(f"{prefix} {route or rule.pattern}" if (route or not rule.is_default)
                     else prefix)
    tags = rule.trace_tags
    live = span.trace
    if live.tags:
        tags.update(live.tags)  # the application's own tags win
    live.set_tags(tags)
