"""The viewer's Starlette app: three HTML pages (one static page, routed in app.js) and the
JSON API they read.

Endpoints are plain functions: Starlette runs them in its thread pool, which is what the
blocking backends (SQLite, an HTTP client) need.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routetrace.backends.base import Backend, BackendError
from routetrace.core.model import parse_trace_id
from routetrace.viewer.queries import TraceQuery, search_page, summary_row

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"
INDEX = STATIC_DIR / "index.html"
MAX_PAGE_SIZE = 200
# Times and offsets go to SQLite as 64-bit integers; anything larger is refused by name here.
MAX_INT = 2**63 - 1

# The page only loads its own script and stylesheet; request data can never run as code.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _JSON(Response):
    """JSON that a browser can parse: no NaN/Infinity, anything unknown as a string."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, default=str)
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, default=str)
        return text.encode("utf-8")


def _error(status: int, message: str) -> _JSON:
    return _JSON({"error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int | None, *, minimum: int = 0,
               maximum: int = MAX_INT) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    shown = raw if len(raw) <= 30 else f"{raw[:12]}…{raw[-6:]} ({len(raw)} characters)"
    if len(raw.strip().lstrip("+-").lstrip("0")) > len(str(maximum)):  # spare int() the work
        raise HTTPException(400, f"{name} must be between {minimum} and {maximum}, not {shown}")
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, not {shown!r}") from None
    if value < minimum:
        raise HTTPException(400, f"{name} must be at least {minimum}")
    if value > maximum:
        raise HTTPException(400, f"{name} must be between {minimum} and {maximum}, not {shown}")
    return value


def create_app(backend: Backend, *, allowed_hosts: list[str] | None = None,
               page_size: int = 50) -> Starlette:
    """The viewer over ``backend``.

    ``allowed_hosts`` restricts the ``Host`` header (``routetrace ui`` passes the loopback
    names when it binds loopback, so a web page cannot reach the viewer by DNS rebinding).
    """

    def index(request: Request) -> Response:
        return FileResponse(INDEX, media_type="text/html")

    def trace_page(request: Request) -> Response:
        status = 200
        try:
            if backend.get_trace(parse_trace_id(request.path_params["trace_id"])) is None:
                status = 404
        except ValueError:
            status = 404
        return FileResponse(INDEX, media_type="text/html", status_code=status)

    def api_info(request: Request) -> Response:
        from routetrace import __version__

        return _JSON({"uri": backend.uri, "version": __version__})

    def api_experiments(request: Request) -> Response:
        summaries = getattr(backend, "experiment_summaries", None)
        if summaries is not None:
            rows = summaries()
        else:
            rows = [
                {**e.to_dict(), "traces": None, "errors": None, "last_request_time": None}
                for e in backend.list_experiments()
            ]
        rows = [r for r in rows if r.get("lifecycle_stage", "active") == "active"]
        return _JSON({"experiments": rows})

    def api_traces(request: Request) -> Response:
        params = request.query_params
        size = min(_int_param(request, "page_size", page_size, minimum=1) or page_size,
                   MAX_PAGE_SIZE)
        # The row offset, (page - 1) * size, must fit SQLite's 64-bit integer too.
        page = _int_param(request, "page", 1, minimum=1, maximum=MAX_INT // size) or 1
        try:
            query = TraceQuery(
                experiment_ids=tuple(v for v in params.getlist("experiment_id") if v),
                status=(params.get("status") or "").upper() or None,
                name=params.get("name") or None,
                text=params.get("q") or None,
                since_ms=_int_param(request, "since", None),
                until_ms=_int_param(request, "until", None),
                extra_filter=params.get("filter") or None,
            )
            traces, has_more, total = search_page(backend, query, page, size)
        except ValueError as exc:
            return _error(400, str(exc))
        return _JSON({
            "traces": [summary_row(t) for t in traces],
            "page": page,
            "page_size": size,
            "has_more": has_more,
            "total": total,
            "filter": query.filter_string(),
        })

    def api_trace(request: Request) -> Response:
        raw = request.path_params["trace_id"]
        try:
            trace = backend.get_trace(parse_trace_id(raw))
        except ValueError as exc:
            return _error(404, str(exc))
        if trace is None:
            return _error(404, f"no trace {raw!r} in {backend.uri}")
        return _JSON(trace.to_dict())

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = str(getattr(exc, "detail", exc))
        if request.url.path.startswith("/api/"):
            return _error(status, detail)
        if status == 404:
            return FileResponse(INDEX, media_type="text/html", status_code=404)
        return Response(detail, status_code=status, media_type="text/plain")

    async def backend_error(request: Request, exc: Exception) -> Response:
        return _error(502, f"backend {backend.uri}: {exc}")

    routes = [
        Route("/", index),
        Route("/experiments/{experiment_id}", index),
        Route("/traces/{trace_id}", trace_page),
        Route("/api/info", api_info),
        Route("/api/experiments", api_experiments),
        Route("/api/traces", api_traces),
        Route("/api/traces/{trace_id}", api_trace),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, BackendError: backend_error},
    )
