"""Span processors: user functions run on every span before it is exported.

They run on the export worker (or the calling thread in sync mode), after the request path
is done, so they see every span complete: the middleware's root span has its inputs and
outputs by then. A processor that raises is logged (once per processor per minute), counted,
and skipped; the remaining processors still run and the trace is still exported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routetrace.core.span import LiveSpan

__all__ = ["SpanProcessor", "run_processors"]

log = logging.getLogger("routetrace")

SpanProcessor = Callable[["LiveSpan"], None]

_last_warning: dict[int, float] = {}
errors = 0


def validate(processors: Iterable[SpanProcessor]) -> tuple[SpanProcessor, ...]:
    result = tuple(processors)
    for p in result:
        if not callable(p):
            raise TypeError(f"span processors must be callables taking a span, not {p!r}")
    return result


def run_processors(processors: tuple[SpanProcessor, ...], span: LiveSpan) -> None:
    global errors
    for processor in processors:
        try:
            processor(span)
        except Exception:
            errors += 1
            now = time.monotonic()
            key = id(processor)
            if now - _last_warning.get(key, -1e9) >= 60:
                _last_warning[key] = now
                name = getattr(processor, "__qualname__", repr(processor))
                log.warning(
                    "routetrace: span processor %s raised; skipped it for span %r "
                    "(the trace is still exported; further errors from it are "
                    "logged once a minute)", name, span.name, exc_info=True,
                )
