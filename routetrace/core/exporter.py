"""The export pipeline as the tracer sees it: what takes a finished trace off its hands.

A protocol, so that the core never imports the export floor above it: the package's root
hands the real pipeline (``routetrace.export.pipeline.Pipeline``) to
:func:`routetrace.core.tracer.install`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from routetrace.core.live_trace import LiveTrace

__all__ = ["Exporter"]


class Exporter(Protocol):
    """The export pipeline, as far as the tracer hands traces to it and stops it."""

    def activate(self) -> None:
        """The first trace of the process: install the exit hooks (no thread yet)."""
        ...

    def put(self, trace: LiveTrace) -> bool:
        """Queue a finished trace without blocking; False when it was dropped (counted).
        Once the pipeline is shut down, the trace is written at once instead."""
        ...

    def write_sync(self, trace: LiveTrace) -> None:
        """Build and write now (synchronous logging); spool on failure; counted."""
        ...

    def watch(self) -> None:
        """A trace with a deadline started: make sure the timeout watchdog runs."""
        ...

    def flush(self, timeout: float | None = None) -> bool: ...

    def hurry(self) -> None:
        """Wake the workers now (a SIGTERM is coming)."""
        ...

    def shutdown(self, reason: str) -> bool:
        """Stop the watchdog, flush within the grace period, spool the rest, stop the workers."""
        ...

    def settle(self, reason: str) -> bool:
        """As ``shutdown`` but the pipeline keeps working (ASGI lifespan shutdown)."""
        ...

    def stop(self) -> None:
        """Stop threads without flushing (the tracer is being replaced)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def after_fork_in_child(self) -> None: ...
