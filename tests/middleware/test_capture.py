"""The exchange both middlewares capture into."""

from __future__ import annotations

from routetrace.middleware.asgi import _ASGIExchange
from routetrace.middleware.capture import Exchange
from routetrace.middleware.wsgi import _WSGIExchange


def test_asgi_and_wsgi_record_a_request_s_exception_with_the_same_code() -> None:
    for name in ("caught", "fail"):
        assert getattr(_ASGIExchange, name) is getattr(Exchange, name), name
        assert getattr(_WSGIExchange, name) is getattr(Exchange, name), name
