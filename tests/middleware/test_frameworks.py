"""Route templates from the frameworks, through the real frameworks."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import django
import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

import routetrace
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware, frameworks
from tests.middleware.conftest import call, only_trace


def user(request: HttpRequest, id: int) -> JsonResponse:
    with routetrace.start_span("load user") as span:
        span.set_inputs({"id": id})
    return JsonResponse({"id": id})


def broken(request: HttpRequest) -> JsonResponse:
    raise LookupError("no such user")


urlpatterns = [path("users/<int:id>/", user), path("users/broken/", broken)]


@pytest.fixture(scope="module")
def django_settings() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
            MIDDLEWARE=["routetrace.middleware.frameworks.DjangoRouteMiddleware"],
            INSTALLED_APPS=[], USE_TZ=True,
        )
        django.setup()


CONFIG = {"routes": [{"path": "/users/**", "experiment": "users"}]}


def test_django_wsgi(django_settings: None) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from werkzeug.test import create_environ, run_wsgi_app

    app = WSGITracingMiddleware(WSGIHandler(), config=CONFIG)
    body, _status, _ = run_wsgi_app(app, create_environ("/users/42/"))
    assert b"".join(body) == b'{"id": 42}'
    body.close()
    trace = only_trace("users")
    assert trace.data.spans[0].name == "GET /users/<int:id>/"
    assert [s.name for s in trace.data.spans[1:]] == ["load user"]


def test_django_asgi(django_settings: None) -> None:
    from django.core.handlers.asgi import ASGIHandler

    sent = call(TracingMiddleware(ASGIHandler(), config=CONFIG), "GET", "/users/7/")
    assert sent.body == b'{"id": 7}'
    trace = only_trace("users")
    root = trace.data.spans[0]
    assert root.name == "GET /users/<int:id>/"
    load = trace.data.spans[1]
    assert load.name == "load user"  # a sync view in a thread: still in the request's trace
    assert load.parent_id == root.span_id


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_an_exception_django_answers_with_a_500_page_is_recorded_on_the_span(
        django_settings: None, interface: str) -> None:
    if interface == "wsgi":
        from django.core.handlers.wsgi import WSGIHandler
        from werkzeug.test import create_environ, run_wsgi_app

        body, status, _ = run_wsgi_app(WSGITracingMiddleware(WSGIHandler(), config=CONFIG),
                                       create_environ("/users/broken/"))
        body.close()
        assert status.startswith("500")
    else:
        from django.core.handlers.asgi import ASGIHandler

        sent = call(TracingMiddleware(ASGIHandler(), config=CONFIG), "GET", "/users/broken/")
        assert sent.status == 500
    trace = only_trace("users")
    root = trace.data.spans[0]
    assert trace.info.state == "ERROR"
    assert [(e.name, e.attributes["exception.type"], e.attributes["exception.message"])
            for e in root.events] == [("exception", "LookupError", "no such user")]
    assert "raise LookupError" in root.events[0].attributes["exception.stacktrace"]


def test_quart_route_template() -> None:
    from quart import Quart

    app = Quart("quart_test")
    frameworks.init_quart(app)

    @app.get("/items/<int:item>")
    async def item(item: int) -> dict[str, int]:
        with routetrace.start_span("fetch"):
            return {"item": item}

    traced = TracingMiddleware(app, config={"routes": [{"path": "/items/*",
                                                         "experiment": "items"}]})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=traced)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/items/5")

    response = asyncio.run(go())
    assert response.json() == {"item": 5}
    trace = only_trace("items")
    assert trace.data.spans[0].name == "GET /items/<int:item>"
    assert [s.name for s in trace.data.spans[1:]] == ["fetch"]


def test_frameworks_module_imports_no_framework() -> None:
    import subprocess

    code = ("import sys, routetrace.middleware; "
            "bad = [m for m in ('django', 'flask', 'quart', 'starlette', 'fastapi') "
            "if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_explicit_route_key_wins() -> None:
    scope: dict[str, Any] = {"route": type("R", (), {"path": "/from/starlette",
                                                     "endpoint": None})()}
    assert frameworks.asgi_route(scope) == "/from/starlette"
    frameworks.set_route(scope, "/explicit")
    assert frameworks.asgi_route(scope) == "/explicit"
    assert frameworks.wsgi_route({}) is None
