"""Route templates from the frameworks, for low-cardinality span names.

Nothing here imports a framework until it is used. The middleware reads, in order:

- ``scope["routetrace.route"]`` / ``environ["routetrace.route"]``: set by :func:`set_route`
  (any framework, or your own code);
- Starlette / FastAPI: ``scope["route"].path``, set by the router, prefixed by the mount path;
- Flask / Werkzeug: ``environ["werkzeug.request"].url_rule.rule``;
- Django: :class:`DjangoRouteMiddleware` (add it to ``MIDDLEWARE``) records
  ``request.resolver_match.route``;
- Quart: :func:`init_quart` registers a ``before_request`` hook recording ``url_rule.rule``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = [  # noqa: F822 (DjangoRouteMiddleware is built lazily by __getattr__)
    "DjangoRouteMiddleware", "asgi_route", "init_quart", "set_route", "wsgi_route"]

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


def _django_middleware() -> type:
    from django.utils.deprecation import MiddlewareMixin

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
