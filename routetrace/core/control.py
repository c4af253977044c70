"""Process-wide switches (enable, disable, span processors, async logging, flush, counts),
and carrying the current trace into other threads."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routetrace.core import processors as processors_mod
from routetrace.core.tracer import get_tracer

__all__ = [
    "TracedThreadPoolExecutor",
    "configure",
    "copy_context_to",
    "disable",
    "enable",
    "enable_async_logging",
    "flush",
    "get_export_stats",
    "is_enabled",
]


class _ConfigScope:
    """What ``configure`` returns: ignore it, or use it as ``with routetrace.configure(...):``
    to put the previous processors back on exit (as MLflow's ``configure`` does)."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[Callable[[Any], None], ...]) -> None:
        self._previous = previous

    def __enter__(self) -> _ConfigScope:
        return self

    def __exit__(self, *exc: object) -> None:
        get_tracer().processors = self._previous


def configure(span_processors: list[Callable[[Any], None]] | None = None) -> _ConfigScope:
    """Set the span processors run on every span before export (``fn(span)``, in place).

    >>> with routetrace.configure(span_processors=[redact]):  # only inside the block
    ...     agent.run()
    """
    tracer = get_tracer()
    previous = tracer.processors
    if span_processors is not None:
        tracer.processors = processors_mod.validate(span_processors)
    return _ConfigScope(previous)


def enable() -> None:
    get_tracer().enabled = True


def disable() -> None:
    """Turn tracing off for this process: every API becomes a no-op."""
    get_tracer().enabled = False


def is_enabled() -> bool:
    return get_tracer().enabled


def enable_async_logging(enabled: bool = True) -> None:
    get_tracer().async_logging = bool(enabled)


def flush(timeout: float | None = None) -> bool:
    """Block until every finished trace is written (True) or ``timeout`` passes (False)."""
    return get_tracer().flush(timeout)


def get_export_stats() -> dict[str, int]:
    """Counts of queued, written, dropped, retried, spooled... traces in this process."""
    return get_tracer().stats()


def copy_context_to(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` to run in a copy of the current context (trace, destination, run).

    >>> threading.Thread(target=routetrace.copy_context_to(work)).start()
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


class TracedThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks join the submitting context's trace."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):  # type: ignore[override]
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)
