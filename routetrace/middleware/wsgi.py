"""``WSGITracingMiddleware``: one root span per WSGI request.

>>> flask_app.wsgi_app = WSGITracingMiddleware(flask_app.wsgi_app, config="routetrace.toml")

``start_response`` is wrapped to see the status and headers; the span ends when the response
iterable is exhausted or closed (PEP 3333 servers always call ``close()``), so streamed
responses are timed to their last chunk. While the server iterates a streamed body, the
request's trace is current again, so spans started by a generator land in the right trace.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace

from routetrace.core import tracer as tracer_mod
from routetrace.core.destination import reset_context_destination, set_context_destination
from routetrace.core.span import NO_OP_SPAN
from routetrace.middleware.capture import Exchange, parse_traceparent
from routetrace.middleware.frameworks import watch_exceptions, wsgi_route
from routetrace.middleware.guard import Untraced, abandon, report
from routetrace.routing.config import load
from routetrace.routing.table import RouteTable, Rule

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["WSGITracingMiddleware"]


class WSGITracingMiddleware:
    """Trace every request of a WSGI app. ``config`` as for
    :class:`~routetrace.middleware.TracingMiddleware`."""

    def __init__(self, app: WSGIApplication, *,
                 config: RouteTable | Mapping[str, Any] | str | os.PathLike[str] | None = None,
                 ) -> None:
        self.app = app
        self.table = load(config)
        self._trace_id_header = self.table.trace_id_header or None
        watch_exceptions()  # Flask's and Django's error pages: the exception on the span

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        tracer = tracer_mod.get_tracer()
        if not tracer.enabled:
            return self.app(environ, start_response)
        try:
            method = environ.get("REQUEST_METHOD") or "GET"
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            if not path.isascii():  # WSGI strings are latin-1 decoded bytes: undo it
                path = path.encode("latin-1").decode("utf-8", "replace")
            rule = self.table.match(path or "/", method)
            if rule is not None and rule.sample_rate < 1.0 and random.random() >= rule.sample_rate:
                rule = None
        except Exception:
            report("route matching")
            rule = None
        if rule is None:
            return self.app(environ, start_response)
        span = dest_token = None
        try:
            raw = environ.get("HTTP_TRACEPARENT")
            remote = parse_traceparent(raw.encode("latin-1")) if raw else None
            if tracer.table_default is None:  # for traces started outside any request
                tracer.table_default = self.table.default_experiment
            experiment = rule.experiment
            if experiment is not None:
                dest_token = set_context_destination(experiment)
            span = tracer.start_root(method, rule.span_type, experiment,
                                     self.table.default_experiment, rule.timeout_seconds, remote)
            if span is NO_OP_SPAN:
                raise Untraced
            ex = _WSGIExchange(self.table, rule, method, path or "/", self._trace_id_header)
            ex.environ = environ
            ex.span = span
            span._deferred = ex
            if rule.capture_body and "wsgi.input" in environ:
                environ["wsgi.input"] = _TeeInput(environ["wsgi.input"], ex)
            ctx_token = otel_context.attach(otel_trace.set_span_in_context(span))
        except Exception as exc:
            abandon(exc, span, dest_token)
            return self.app(environ, start_response)
        try:
            result = self.app(environ, functools.partial(_start_response, ex, start_response))
        except BaseException as exc:
            ex.fail(exc)
            raise
        finally:
            try:
                otel_context.detach(ctx_token)
                if dest_token is not None:
                    reset_context_destination(dest_token)
            except Exception:
                report("restoring the context")
        return _TracedBody(result, ex)


class _WSGIExchange(Exchange):
    __slots__ = ("_header",)

    def __init__(self, table: RouteTable, rule: Rule, method: str, path: str,
                 header: str | None) -> None:
        super().__init__(table, rule, method, path)
        self._header = header

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            span = self.span
            code = self.status
            if code is None:
                if span.status == "UNSET":
                    span.set_status("ERROR", "the app sent no response")
            elif code >= 500 and span.status != "ERROR":
                span.set_status("ERROR", f"HTTP {code}")
            span.end()
        except Exception:
            report("ending the request span")


def _start_response(ex: _WSGIExchange, inner: StartResponse, status: str,
                    headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    """``start_response`` as the app sees it: ``partial(_start_response, ex, start_response)``.

    The server's callable is held by the partial, not by the exchange, which waits with its
    trace for the export worker: as in the ASGI middleware, a queued trace must not keep the
    server's per-request objects alive.
    """
    try:
        ex.status = int(status[:3])
        ex.response_headers = headers
        # Flask drops environ["werkzeug.request"] when its request context ends: read the
        # url_rule now, while it is there.
        ex.route = wsgi_route(ex.environ)
        header = ex._header
        if header is not None and not any(k.lower() == header for k, _ in headers):
            headers = [*headers, (header, f"tr-{ex.span.trace.trace_id:032x}")]
    except Exception:
        report("response capture")
    if exc_info is None:
        return inner(status, headers)
    return inner(status, headers, exc_info)


class _TracedBody:
    """The app's response iterable, ending the span when exhausted or closed."""

    __slots__ = ("_ex", "_iterator", "_result")

    def __init__(self, result: Iterable[bytes], ex: _WSGIExchange) -> None:
        self._result = result
        self._ex = ex
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        ex = self._ex
        if self._iterator is None:
            self._iterator = iter(self._result)
        if ex.ended:
            return next(self._iterator)
        # Make the trace current while the app's generator runs.
        span = ex.span
        dest = ex.rule.experiment
        dest_token = None if dest is None else set_context_destination(dest)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        try:
            chunk = next(self._iterator)
        except StopIteration:
            ex.end()
            raise
        except BaseException as exc:
            ex.fail(exc)
            raise
        finally:
            otel_context.detach(token)
            if dest_token is not None:
                reset_context_destination(dest_token)
        if ex.rule.capture_body:
            try:
                ex.keep_response_chunk(chunk)
            except Exception:
                report("response capture")
        return chunk

    def __del__(self) -> None:
        # Released without close(): a test client that reads only the status (Flask's and
        # Werkzeug's do not close an unread response). Close it, which ends the span with the
        # status the app gave, rather than leave the trace open until exit and export it as
        # an ERROR. In the request's context: a streamed body suspended inside a span resets
        # the current span as it closes, which must not leak into whatever context the
        # garbage collector runs in.
        ex = self._ex
        if ex.ended:
            return
        try:
            token = otel_context.attach(otel_trace.set_span_in_context(ex.span))
            try:
                self.close()
            finally:
                otel_context.detach(token)
        except Exception:
            report("closing a released response")

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._ex.fail(exc)
            raise
        finally:
            self._ex.end()


class _TeeInput:
    """``wsgi.input`` that keeps a copy of what the app reads, up to the rule's cap."""

    __slots__ = ("_ex", "_stream")

    def __init__(self, stream: Any, ex: Exchange) -> None:
        self._stream = stream
        self._ex = ex

    def _keep(self, data: bytes) -> bytes:
        try:
            if data:
                self._ex.keep_request_chunk(data)
        except Exception:
            report("request capture")
        return data

    def read(self, *args: Any) -> bytes:
        return self._keep(self._stream.read(*args))

    def readinto(self, buffer: Any) -> int:
        # Werkzeug's LimitedStream reads this way.
        n = self._stream.readinto(buffer)
        if n:
            self._keep(bytes(memoryview(buffer)[:n]))
        return n

    def read1(self, *args: Any) -> bytes:
        return self._keep(self._stream.read1(*args))

    def readline(self, *args: Any) -> bytes:
        return self._keep(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        for line in lines:
            self._keep(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._keep(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
