"""Route templates from the frameworks, for low-cardinality span names.

Nothing here imports a framework until it is used. The middleware reads, in order:

- ``scope["routetrace.route"]`` / ``environ["routetrace.route"]``: set by :func:`set_route`
  (any framework, or your own code);
- Starlette / FastAPI: ``scope["route"].path``, set by the router, prefixed by the mount path;
- Flask / Werkzeug: ``environ["werkzeug.request"].url_rule.rule``;
- Django: :class:`DjangoRouteMiddleware` (add it to ``MIDDLEWARE``) records
  ``request.resolver_match.route``;
- Quart: :func:`init_quart` registers a ``before_request`` hook recording ``url_rule.rule``.

An exception the framework catches and answers with an error page never reaches the
middleware; Flask and Django report it with their ``got_request_exception`` signal, which
:func:`watch_exceptions` connects so that it is recorded on the request's span.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace as otel_trace

from routetrace.core.span import LiveSpan
from routetrace.middleware.guard import report

__all__ = [  # noqa: F822 (DjangoRouteMiddleware is built lazily by __getattr__)
    "DjangoRouteMiddleware", "asgi_route", "init_quart", "record_caught_exception",
    "set_route", "watch_exceptions", "wsgi_route"]

ROUTE_KEY = "routetrace.route"


def set_route(scope_or_environ: MutableMapping[str, Any], template: str) -> None:
    """Name the request's route (``"/users/{id}"``) for the span name and ``http.route``."""
    scope_or_environ[ROUTE_KEY] = template


def asgi_route(scope: MutableMapping[str, Any], root_path: str = "") -> str | None:
    """The route template of an ASGI request, read after the app routed it."""
    explicit = scope.get(ROUTE_KEY)
    if explicit:
        return str(explicit)
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    # Inside a Mount, Starlette extends root_path by the mount's matched prefix and the route's
    # own path is relative to it.
    mounted = str(scope.get("root_path") or "")[len(root_path):]
    if hasattr(route, "routes") or (hasattr(route, "app") and not hasattr(route, "endpoint")):
        return mounted or path  # the Mount itself was the last match (a mounted app)
    return (mounted + path) or "/"


def wsgi_route(environ: MutableMapping[str, Any]) -> str | None:
    """The route template of a WSGI request: explicit, else Flask/Werkzeug's url_rule."""
    explicit = environ.get(ROUTE_KEY)
    if explicit:
        return str(explicit)
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    template = getattr(rule, "rule", None)
    return template if isinstance(template, str) else None


def init_quart(app: Any) -> Any:
    """Record Quart's ``url_rule`` for span names: ``init_quart(app)`` once, after creating it."""
    from quart import request

    @app.before_request
    async def _routetrace_route() -> None:
        rule = request.url_rule
        if rule is not None:
            set_route(request.scope, rule.rule)

    return app


def record_caught_exception(exc: BaseException) -> None:
    """Record ``exc``, which the framework caught and answered with an error page, on the
    current request's span (a no-op outside a traced request). Never raises."""
    try:
        span = otel_trace.get_current_span()
        if span.__class__ is not LiveSpan:
            return
        trace = span.trace  # type: ignore[attr-defined]
        root = trace.root
        if trace.finished or root is None:
            return
        caught = getattr(root._deferred, "caught", None)  # the middleware's exchange
        if caught is not None:
            caught(exc)
    except Exception:
        report("recording a caught exception")


def watch_exceptions() -> None:
    """Connect :func:`record_caught_exception` to Flask's and Django's
    ``got_request_exception``, for whichever of them is imported (none is imported here).

    Both middlewares call it when they are created; calling it again changes nothing.
    """
    flask = sys.modules.get("flask")
    if flask is not None:
        flask.got_request_exception.connect(_flask_exception)
    if "django" in sys.modules:
        try:
            from django.core.signals import got_request_exception
        except ImportError:  # a broken or partial Django: nothing to connect to
            return
        got_request_exception.connect(_django_exception, dispatch_uid="routetrace.caught")


def _flask_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    if exception is not None:
        record_caught_exception(exception)


def _django_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    exc = sys.exc_info()[1]  # Django sends the signal from its ``except`` block
    if exc is not None:
        record_caught_exception(exc)


def _django_middleware() -> type:
    from django.utils.deprecation import MiddlewareMixin

    watch_exceptions()

    class DjangoRouteMiddleware(MiddlewareMixin):
        """Django middleware recording ``resolver_match.route`` for the span name.

        Add ``"routetrace.middleware.frameworks.DjangoRouteMiddleware"`` to ``MIDDLEWARE``.
        Works under WSGI (``request.META`` is the environ) and ASGI (``request.scope``).
        """

        def process_view(self, request: Any, view_func: Any, view_args: Any,
                         view_kwargs: Any) -> None:
            match = getattr(request, "resolver_match", None)
            route = getattr(match, "route", None)
            if route:
                template = route if route.startswith("/") else "/" + route
                target = getattr(request, "scope", None)
                set_route(target if target is not None else request.META, template)

    return DjangoRouteMiddleware


def __getattr__(name: str) -> Any:
    # Django imports MIDDLEWARE entries by dotted path; build the class on first access so
    # importing this module never imports Django.
    if name == "DjangoRouteMiddleware":
        cls = _django_middleware()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
