"""The timeout watchdog: aborts traces that run past their deadline and exports them.

It only exists once a trace with a deadline has started (``MLFLOW_TRACE_TIMEOUT_SECONDS``
or a route's ``timeout_seconds``): no timeout configured, no thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routetrace.core.live_trace import LiveTrace

__all__ = ["Watchdog"]

log = logging.getLogger("routetrace")


class Watchdog:
    def __init__(self, interval: float, live_traces: Callable[[], Iterable[LiveTrace]]) -> None:
        self.interval = interval
        self._live_traces = live_traces
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.aborted = 0

    def ensure_running(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="routetrace-watchdog", daemon=True)
                t.start()
                self._thread = t

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self, now_ns: int | None = None) -> int:
        """Abort every expired trace once; returns how many were aborted."""
        now = time.time_ns() if now_ns is None else now_ns
        count = 0
        for trace in list(self._live_traces()):
            deadline = trace.deadline_ns
            if deadline is not None and deadline <= now and not trace.finished:
                seconds = (now - trace.root.start_time_ns) / 1e9 if trace.root else 0.0
                message = (
                    f"trace exceeded its timeout after {seconds:.3f}s and was aborted "
                    "by the routetrace watchdog"
                )
                if trace.abort("timeout", message):
                    count += 1
        if count:
            self.aborted += count
            log.warning("routetrace: watchdog aborted %d trace(s) past their timeout", count)
        return count

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("routetrace: watchdog check failed")

    def stop(self) -> None:
        self._stop.set()
