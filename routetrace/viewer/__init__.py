"""The web viewer: a small Starlette app over any :class:`~routetrace.backends.base.Backend`.

``routetrace ui`` serves it on loopback. It shows request data (inputs, headers the route table
captures, bodies up to the cap) and has no login: never expose it without putting your own
authentication in front of it.

>>> from routetrace.viewer import create_app
>>> app = create_app(routetrace.core.tracer.get_tracer().backend)
"""

from routetrace.viewer.app import create_app

__all__ = ["create_app"]
