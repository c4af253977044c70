"""Tracing middleware for ASGI (FastAPI, Starlette, Quart, Django) and WSGI (Flask, Django).

>>> from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
>>> app.add_middleware(TracingMiddleware, config="routetrace.toml")
>>> flask_app.wsgi_app = WSGITracingMiddleware(flask_app.wsgi_app)
"""

from routetrace.middleware.asgi import TracingMiddleware
from routetrace.middleware.frameworks import init_quart, set_route
from routetrace.middleware.wsgi import WSGITracingMiddleware

__all__ = ["TracingMiddleware", "WSGITracingMiddleware", "init_quart", "set_route"]
