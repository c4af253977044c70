"""The apps the reliability suite serves through real servers (uvicorn, gunicorn).

Imported by the server process by its dotted name, e.g.
``uvicorn tests.reliability.server_apps:starlette_app``. With ``RELIABILITY_PRELOAD_TRACE``
set, importing this module makes one trace (named by the variable's value) in the importing
process: under ``gunicorn --preload`` that is the master, before it forks its workers.
"""

from __future__ import annotations

import os
from typing import Any

import routetrace
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware

ROUTES: dict[str, Any] = {
    "experiment": "web",
    "exclude": ["/healthz"],
    "routes": [
        {"path": "/r/{rid}", "experiment": "load"},
        {"path": "/chat/{session}", "methods": ["POST"], "experiment": "chat"},
    ],
}

_preload = os.environ.get("RELIABILITY_PRELOAD_TRACE")
if _preload:
    with routetrace.start_span(_preload, trace_destination=routetrace.Experiment(name="preload")):
        pass


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def rid(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["rid"])

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse(await request.json())

    app = Starlette(routes=[Route("/hello", hello), Route("/healthz", hello),
                            Route("/r/{rid}", rid),
                            Route("/chat/{session}", chat, methods=["POST"])])
    app.add_middleware(TracingMiddleware, config=ROUTES)
    return app


def _flask() -> Any:
    from flask import Flask, request

    app = Flask(__name__)

    @app.get("/hello")
    @app.get("/healthz")
    def hello() -> str:
        return "hi"

    @app.get("/r/<rid>")
    def rid(rid: str) -> str:
        return rid

    @app.post("/chat/<session>")
    def chat(session: str) -> Any:
        return request.get_json()

    app.wsgi_app = WSGITracingMiddleware(app.wsgi_app, config=ROUTES)  # type: ignore[method-assign]
    return app


def __getattr__(name: str) -> Any:  # build only the app the server asks for
    if name == "starlette_app":
        return _starlette()
    if name == "flask_app":
        return _flask()
    raise AttributeError(name)
