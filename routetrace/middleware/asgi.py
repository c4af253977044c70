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
import os
import random
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from routetrace.middleware.capture import Exchange, parse_traceparent
from routetrace.middleware.guard import Untraced, abandon, report
from routetrace.middleware.types import ASGIApp, Message, Receive, Scope, Send
from routetrace.routing.config import load
from routetrace.routing.table import RouteTable
from routetrace.tracing import lifecycle
from routetrace.tracing import tracer as tracer_mod
from routetrace.tracing.destination import _context_destination
from routetrace.tracing.span import NO_OP_SPAN

__all__ = ["TracingMiddleware"]

_partial = functools.partial
_random = random.random
_time_ns = time.time_ns
_attach = otel_context.attach
_detach = otel_context.detach
_set_span_in_context = otel_trace.set_span_in_context


def _otel_context_var() -> tuple[Any, str] | tuple[None, None]:
    """OpenTelemetry's own ContextVar and span key when its default runtime context is in use.

    Setting the span through it directly is what ``attach(set_span_in_context(span))`` does,
    without three layers of calls (about 0.5 µs a request). Private names of
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

_Context = otel_context.Context
_Config = RouteTable | Mapping[str, Any] | str | os.PathLike[str] | None


class TracingMiddleware:
    """Trace every HTTP request and WebSocket session of an ASGI app.

    ``config`` is a route table file, a loaded :class:`~routetrace.routing.RouteTable`, a
    mapping, or None to find one (``ROUTETRACE_CONFIG``, ``./routetrace.toml``,
    ``[tool.routetrace]`` in ``./pyproject.toml``, else trace everything into the default
    experiment). A bad table raises :class:`~routetrace.routing.ConfigError` here, at start-up.
    """

    def __init__(self, app: ASGIApp, *, config: _Config = None) -> None:
        self.app = app
        self._otel_var, self._span_key = _otel_context_var()
        self.table = load(config)
        header = self.table.trace_id_header
        self._trace_id_header = header.encode("latin-1") if header else None
        self._default_experiment = self.table.default_experiment

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, receive, _LifespanSend(send))
                return
            await self.app(scope, receive, send)
            return
        tracer = tracer_mod._tracer or tracer_mod.get_tracer()
        if not tracer.enabled:
            await self.app(scope, receive, send)
            return
        try:
            method = scope.get("method", "GET")
            rule = self.table.match(scope["path"], method)
            if rule is not None and rule.sample_rate < 1.0 and _random() >= rule.sample_rate:
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
            experiment = rule.experiment
            if experiment is not None:
                dest_token = _context_destination.set(experiment)
            span = tracer.start_root(method, rule.span_type, experiment,
                                     self._default_experiment, rule.timeout_seconds, remote)
            if span is NO_OP_SPAN:
                raise Untraced
            ex = _ASGIExchange(self.table, rule, method, scope["path"])
            ex.scope = scope
            ex.root_path = scope.get("root_path", "")
            ex.span = span
            ex._header = self._trace_id_header
            span._deferred = ex
            otel_var = self._otel_var
            if otel_var is not None:
                # Building a Context (a dict subclass) from a mapping is the costly part:
                # copy the parent only when there is one (usually the context is empty).
                parent = otel_var.get()
                ctx_token = otel_var.set(_Context({**parent, self._span_key: span}) if parent
                                         else _Context({self._span_key: span}))
            else:
                ctx_token = _attach(_set_span_in_context(span))
        except Exception as exc:
            abandon(exc, span, dest_token)
            await self.app(scope, receive, send)
            return
        # -- run the app -----------------------------------------------------------------
        try:
            if kind == "http":
                await self.app(scope, _partial(_http_receive, ex, receive),
                               _partial(_http_send, ex, send))
            else:
                await self.app(scope, _partial(_ws_receive, ex, receive),
                               _partial(_ws_send, ex, send))
        except BaseException as exc:
            ex.fail(exc)
            raise
        finally:
            try:
                if otel_var is not None:
                    otel_var.reset(ctx_token)
                else:
                    _detach(ctx_token)
                if dest_token is not None:
                    _context_destination.reset(dest_token)
            except Exception:
                report("restoring the context")
            if not ex.ended:
                ex.end()  # the app returned without finishing its response: end here


class _ASGIExchange(Exchange):
    """One request's capture; the wrappers of ``receive`` and ``send`` below report to it."""

    _header: bytes | None = None
    _trailers = False
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
            # ``span.end(end_time_ns=self._end_ns)`` without its optional arguments: the
            # trace hands itself off when its root ends (exactly once: LiveTrace.end_span).
            if span.end_time_ns is None:
                span.trace.end_span(span, self._end_ns or _time_ns())
        except Exception:
            report("ending the request span")

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            return  # e.g. a background task failing after the response: not this request's
        try:
            self.span.record_exception(exc)
        except Exception:
            report("recording an exception")
        self.end()

    def _with_trace_id(self, message: Message) -> Message:
        header = self._header
        size = len(header)
        headers = message.get("headers") or ()
        for name, _ in headers:
            # Only a name of the same length can match: lower-casing every response header
            # name was a tenth of the middleware's own time per request (py-spy).
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
            ex.end()
    except Exception:
        report("request capture")
    return message


def _http_send(ex: _ASGIExchange, inner: Send, message: Message) -> Awaitable[None]:
    # Not a coroutine: it returns the server's own ``send(message)`` for the app to await,
    # one coroutine frame less per message. So the span ends as the last chunk is handed to
    # the server rather than after the server took it (the same instant, to a microsecond).
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
            if status is None:
                ex.end()  # a body without a start: end() says so on the span
            elif status >= 500:
                # An app that sent a 500 usually raises next (Starlette's
                # ServerErrorMiddleware does): end when it does, so the exception is on the
                # span, timed from here.
                ex._end_ns = _time_ns()
            elif not ex.ended:
                # ``ex.end()`` inlined for the usual case, where the status changes nothing
                # on the span: one frame and its checks less per request.
                ex.ended = True
                span = ex.span
                if span.end_time_ns is None:
                    span.trace.end_span(span, _time_ns())
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


class _LifespanSend:
    """Settle the export (flush, spool the rest, leave the counts) before telling the server
    the app has shut down: under uvicorn that is the last chance, SIGTERM follows."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _settle()
        await self._send(message)


async def _settle() -> None:
    if tracer_mod.peek_tracer() is None:
        return
    try:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): a short blocking settle at shutdown
            lifecycle.settle("lifespan shutdown")
            return
        await loop.run_in_executor(None, lifecycle.settle, "lifespan shutdown")
    except Exception:
        report("settling the export at lifespan shutdown")
