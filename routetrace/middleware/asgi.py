"""``TracingMiddleware``: one root span per HTTP request and WebSocket session (pure ASGI).

>>> app.add_middleware(TracingMiddleware, config="routetrace.toml")

The request path does as little as it can: match the route (one regex), read ``traceparent``,
start the root span, wrap ``receive`` and ``send`` to see the status, the last body chunk and
a disconnect. Everything else is built on the export worker (:mod:`.capture`). Any error in
that code is counted and logged (:mod:`.guard`), never raised: the response is what the app
produced, plus the trace id header when ``trace_id_header`` is set.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from routetrace.core import tracer as tracer_mod
from routetrace.core.destination import context_destination
from routetrace.core.otel_bridge import current_request
from routetrace.core.span import NO_OP_SPAN, LiveSpan
from routetrace.middleware.capture import Exchange, parse_traceparent
from routetrace.middleware.frameworks import watch_exceptions
from routetrace.middleware.guard import Untraced, abandon, report
from routetrace.middleware.lifespan import LifespanSend
from routetrace.middleware.types import ASGIApp, Message, Receive, Scope, Send
from routetrace.routing.config import ConfigError, load
from routetrace.routing.table import RouteTable

__all__ = ["TracingMiddleware"]

log = logging.getLogger("routetrace")


def _otel_context_var() -> tuple[Any, str] | tuple[None, None]:
    """OpenTelemetry's own ContextVar and span key when its default runtime context is in use.

    Setting the span through it directly is what ``attach(set_span_in_context(span))`` does,
    without its three layers of calls on every request. Private names of
    ``opentelemetry-api``: anything unexpected and the public calls are used.
    """
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
        from opentelemetry.trace.propagation import _SPAN_KEY

        runtime = otel_context._RUNTIME_CONTEXT  # type: ignore[attr-defined]
        # The key is ``create_key("current-span")``: the name plus a uuid, made at import.
        if type(runtime) is ContextVarsRuntimeContext and _SPAN_KEY.startswith("current-span"):
            var = runtime._current_context
            if isinstance(var, contextvars.ContextVar):
                return var, _SPAN_KEY
    except Exception:
        pass
    return None, None

_Config = RouteTable | Mapping[str, Any] | str | os.PathLike[str] | None


class TracingMiddleware:
    """Trace every HTTP request and WebSocket session of an ASGI app.

    ``config`` is a route table file, a loaded :class:`~routetrace.routing.RouteTable`, a
    mapping, or None to find one (``ROUTETRACE_CONFIG``, ``./routetrace.toml``,
    ``[tool.routetrace]`` in ``./pyproject.toml``, else trace everything into the default
    experiment). A bad table raises :class:`~routetrace.routing.ConfigError` here; when this
    runs inside a server's event loop (Starlette builds ``add_middleware`` middleware lazily,
    in the first ASGI call, the lifespan's), the server's start-up fails with that message
    instead, and requests pass through untraced.
    """

    def __init__(self, app: ASGIApp, *, config: _Config = None) -> None:
        self.app = app
        self._otel_var, self._span_key = _otel_context_var()
        try:
            self.table = load(config)
        except ConfigError as exc:
            if not _in_event_loop():
                raise
            # Raised here, inside the framework's first ASGI call, the error would only make
            # uvicorn call lifespan "unsupported", then every request a 500. Fail start-up.
            self.__class__ = _BrokenTable
            self.config_error = exc
            return
        header = self.table.trace_id_header
        self._trace_id_header = header.encode("latin-1") if header else None
        self._default_experiment = self.table.default_experiment
        self._framework_spans = self.table.framework_spans
        watch_exceptions()  # Django's error pages: the exception is recorded on the span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, receive, LifespanSend(send))
                return
            await self.app(scope, receive, send)
            return
        tracer = tracer_mod.get_tracer()
        if not tracer.enabled:
            await self.app(scope, receive, send)
            return
        try:
            method = scope.get("method", "GET")
            rule = self.table.match(scope["path"], method)
            if rule is not None and rule.sample_rate < 1.0 and random.random() >= rule.sample_rate:
                rule = None
        except Exception:
            report("route matching")
            rule = None
        if rule is None:  # excluded, disabled or sampled out: untouched
            await self.app(scope, receive, send)
            return
        # -- start the root span ---------------------------------------------------------
        span = dest_token = None
        try:
            remote = None
            for name, value in scope["headers"]:
                if name == b"traceparent":
                    remote = parse_traceparent(value)
                    break
            if tracer.table_default is None:  # for traces started outside any request
                tracer.table_default = self._default_experiment
            otel_var = self._otel_var
            outer = otel_var.get() if otel_var is not None else None
            if remote is None and outer:
                # An OpenTelemetry server layer outside this one (FastAPI's telemetry with the
                # app's SDK, an OpenTelemetry ASGI middleware) already has a span for this
                # request: continue its trace, so the app's exporter sees one trace id.
                remote = _outer_parent(outer.get(self._span_key))
            experiment = rule.experiment
            if experiment is not None:
                dest_token = context_destination.set(experiment)
            span = tracer.start_root(method, rule.span_type, experiment,
                                     self._default_experiment, rule.timeout_seconds, remote)
            if span is NO_OP_SPAN:
                raise Untraced
            ex = _ASGIExchange(self.table, rule, method, scope["path"])
            ex.scope = scope
            ex.root_path = scope.get("root_path", "")
            ex.span = span
            ex._header = self._trace_id_header
            if self._framework_spans:
                ex.framework_spans = True
            span._deferred = ex
            if otel_var is not None:
                # Building a Context (a dict subclass) from a mapping is the costly part:
                # copy the parent only when there is one (usually the context is empty).
                ctx_token = otel_var.set(
                    otel_context.Context({**outer, self._span_key: span}) if outer
                    else otel_context.Context({self._span_key: span}))
            else:
                ctx_token = otel_context.attach(otel_trace.set_span_in_context(span))
            request_token = current_request.set(ex)
        except Exception as exc:
            abandon(exc, span, dest_token)
            await self.app(scope, receive, send)
            return
        # -- run the app -----------------------------------------------------------------
        try:
            if kind == "http":
                await self.app(scope, functools.partial(_http_receive, ex, receive),
                               functools.partial(_http_send, ex, send))
            else:
                await self.app(scope, functools.partial(_ws_receive, ex, receive),
                               functools.partial(_ws_send, ex, send))
        except BaseException as exc:
            ex.fail(exc)
            raise
        finally:
            try:
                if otel_var is not None:
                    otel_var.reset(ctx_token)
                else:
                    otel_context.detach(ctx_token)
                current_request.reset(request_token)
                if dest_token is not None:
                    context_destination.reset(dest_token)
            except Exception:
                report("restoring the context")
            if not ex.ended:
                ex.end()  # the app returned without finishing its response: end here


def _outer_parent(span: Any) -> tuple[int, int] | None:
    """(trace id, span id) of another layer's current span, or None (none, or routetrace's)."""
    if span is None or span.__class__ is LiveSpan:
        return None
    context = span.get_span_context()
    return (context.trace_id, context.span_id) if context.is_valid else None


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _BrokenTable(TracingMiddleware):
    """A ``TracingMiddleware`` whose route table failed to load inside a running server: the
    lifespan start-up fails with the error, so the server exits; requests, if a server without
    lifespan sends any, reach the app untouched and untraced."""

    config_error: ConfigError
    _reported = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed",
                            "message": f"routetrace: {self.config_error}"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
            return
        if not self._reported:
            self._reported = True
            log.error("routetrace: not tracing, the route table is broken: %s",
                      self.config_error)
        await self.app(scope, receive, send)


class _ASGIExchange(Exchange):
    """One request's capture; the wrappers of ``receive`` and ``send`` below report to it."""

    _header: bytes | None = None
    _trailers = False
    framework_spans = False  # FastAPI's own telemetry spans join the trace (route table)
    _end_ns: int | None = None

    def end(self, status: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            span = self.span
            code = self.status if status is None else status
            if code is None:
                if not self.disconnected and span._status == "UNSET":
                    span.set_status("ERROR", "the app sent no response")
            elif code >= 500 and span._status != "ERROR":
                span.set_status("ERROR", f"HTTP {code}")
            # Straight to the one place a span ends (what ``span.end()`` does without its
            # optional arguments): the root span ending hands the trace off.
            span.trace.end_span(span, self._end_ns or time.time_ns())
        except Exception:
            report("ending the request span")

    def _with_trace_id(self, message: Message) -> Message:
        header = self._header
        size = len(header)
        headers = message.get("headers") or ()
        for name, _ in headers:
            # Only a name of the same length can match, so most names are skipped without
            # being lower-cased: this runs for every response header of every request.
            if len(name) == size and bytes(name).lower() == header:
                return message  # the app set it itself
        # A copy of the message and of its header list: the app may reuse either.
        message = message.copy()
        message["headers"] = [*headers, (header, b"tr-%032x" % self.span.trace.trace_id)]
        return message


# ``receive`` and ``send`` as the app sees them: ``partial(_http_send, ex, send)`` and so on
# (a partial is built in C, cheaper than a wrapper object). They never raise for tracing
# reasons. The server's callables are held by these partials, not by the exchange: the trace
# keeps its exchange until the export worker takes it, and the server's callables would keep
# its per-request objects (uvicorn's whole request cycle) alive for the garbage collector to
# walk meanwhile.


async def _http_receive(ex: _ASGIExchange, inner: Receive) -> Message:
    message = await inner()
    try:
        kind = message["type"]
        if kind == "http.request":
            if ex.rule.capture_body:
                ex.keep_request_chunk(message.get("body", b""))
        elif kind == "http.disconnect" and not ex.ended:
            ex.disconnected = True
            if ex.status is not None:
                ex.end()  # a response under way (a stream nobody reads any more) ends here
            # Else the app is still reading the request (an upload cut short): it answers or
            # raises next (Starlette raises ClientDisconnect), and the span ends with that.
    except Exception:
        report("request capture")
    return message


def _http_send(ex: _ASGIExchange, inner: Send, message: Message) -> Awaitable[None]:
    # Not a coroutine: it returns the server's own ``send(message)`` for the app to await,
    # one coroutine frame less per message. So the span ends as the last chunk is handed to
    # the server rather than after the server took it (in practice the same instant).
    kind = message["type"]
    try:
        last = False
        if kind == "http.response.body":
            if ex.rule.capture_body:
                ex.keep_response_chunk(message.get("body", b""))
            last = not message.get("more_body", False) and not ex._trailers
        elif kind == "http.response.start":
            ex.status = message["status"]
            ex.response_headers = message.get("headers")
            if message.get("trailers"):
                ex._trailers = True
            if ex._header is not None:
                message = ex._with_trace_id(message)
        elif kind == "http.response.trailers":
            last = not message.get("more_trailers", False)
        elif kind == "http.response.pathsend" or kind == "http.response.zerocopysend":
            last = kind == "http.response.pathsend" or not message.get("more_body", False)
        if last:
            status = ex.status
            if status is not None and status >= 500:
                # An app that sent a 500 usually raises next (Starlette's
                # ServerErrorMiddleware does): end when it does, so the exception is on the
                # span, timed from here.
                ex._end_ns = time.time_ns()
            else:
                ex.end()  # without a status (a body without a start) end() says so on the span
    except Exception:
        report("response capture")
    return inner(message)


async def _ws_receive(ex: _ASGIExchange, inner: Receive) -> Message:
    message = await inner()
    try:
        if message["type"] == "websocket.disconnect" and not ex.ended:
            ex.disconnected = True
            code = message.get("code", 1000)
            ex.span.set_attribute("websocket.close.code", code)
            ex.end(status=101)
    except Exception:
        report("websocket capture")
    return message


async def _ws_send(ex: _ASGIExchange, inner: Send, message: Message) -> None:
    close = False
    try:
        kind = message["type"]
        if kind == "websocket.accept":
            ex.status = 101
            ex.response_headers = message.get("headers")
            if ex._header is not None:
                message = ex._with_trace_id(message)
        elif kind == "websocket.close":
            close = True
            code = message.get("code", 1000)
            ex.span.set_attribute("websocket.close.code", code)
            if code == 1011:  # "internal error"
                ex.span.set_status("ERROR", f"websocket closed with {code}")
            if ex.status is None:
                ex.status = 403  # closed before accept: the handshake was denied
        elif kind == "websocket.http.response.start":
            ex.status = message["status"]
            ex.response_headers = message.get("headers")
    except Exception:
        report("websocket capture")
    if not close:
        await inner(message)
        return
    try:
        await inner(message)
    finally:
        ex.end()
