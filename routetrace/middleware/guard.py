"""Errors inside routetrace's own request-path code: counted, logged rate-limited, swallowed.

The middleware's promise is that tracing never changes a response. Every place that could fail
because of tracing (a strange header, a non-UTF-8 path, a builder that raises) catches the
error and calls :func:`report`, which counts it per place and logs it at most once a minute per
place, so a bad client cannot flood the logs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from routetrace.core.destination import reset_context_destination
from routetrace.core.span import NO_OP_SPAN

__all__ = ["Untraced", "abandon", "counts", "report"]

log = logging.getLogger("routetrace")

LOG_INTERVAL_SECONDS = 60.0
counts: Counter[str] = Counter()
"""How many times each place failed in this process, e.g. ``counts["request capture"]``."""
_last_logged: dict[str, float] = {}


def report(where: str) -> None:
    """Call from an ``except`` block: count the error and log it with its traceback, rarely."""
    counts[where] += 1
    now = time.monotonic()
    if now - _last_logged.get(where, -LOG_INTERVAL_SECONDS) >= LOG_INTERVAL_SECONDS:
        _last_logged[where] = now
        log.warning(
            "routetrace: %s failed (%d time(s) so far); the response is unaffected, tracing of "
            "this request may be incomplete. Logged at most once a minute.",
            where, counts[where], exc_info=True,
        )


class Untraced(Exception):
    """Tracing turned itself off for this request (e.g. disabled between checks)."""


def abandon(exc: Exception, span: Any, dest_token: Any) -> None:
    """Setting up the trace failed half way: undo what was done; the request runs untraced."""
    if not isinstance(exc, Untraced):
        report("starting the request span")
    try:
        if dest_token is not None:
            reset_context_destination(dest_token)
        if span is not None and span is not NO_OP_SPAN:
            span.end()  # do not leave it open until the watchdog or exit finds it
    except Exception:
        report("abandoning the request span")
