"""The export pipeline a tracer hands its finished traces to: the batch logger, the timeout
watchdog, the exit hooks and the export summary, behind :class:`routetrace.core.exporter.Exporter`.

Making one starts nothing: the logger's workers start with the first queued trace, the
watchdog with the first trace that has a deadline, the exit hooks with the first trace.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from routetrace.export import lifecycle
from routetrace.export.batch_logger import BatchLogger
from routetrace.export.spool import record_export_summary
from routetrace.export.watchdog import Watchdog

if TYPE_CHECKING:
    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.tracer import Tracer

__all__ = ["Pipeline"]

log = logging.getLogger("routetrace")


class Pipeline:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.settings = tracer.settings
        self._logger: BatchLogger | None = None
        self._watchdog: Watchdog | None = None
        self._lock = threading.Lock()

    @property
    def logger(self) -> BatchLogger:
        logger = self._logger
        if logger is None:
            with self._lock:
                if self._logger is None:
                    s = self.settings
                    self._logger = BatchLogger(
                        max_queue_size=s.max_queue_size,
                        max_workers=s.max_workers,
                        retry_timeout=s.retry_timeout_seconds,
                    )
                logger = self._logger
        return logger

    @property
    def watchdog(self) -> Watchdog:
        if self._watchdog is None:
            with self._lock:
                if self._watchdog is None:
                    live = self.tracer.live
                    self._watchdog = Watchdog(self.settings.timeout_check_interval_seconds,
                                              lambda: list(live))
        return self._watchdog

    def activate(self) -> None:
        lifecycle.install(self.settings.install_signal_handlers)

    def put(self, trace: LiveTrace) -> bool:
        # The logger's ``put`` also takes a trace that ends after the exit flush.
        return (self._logger or self.logger).put(trace)

    def write_sync(self, trace: LiveTrace) -> None:
        self.logger.write_sync(trace)

    def watch(self) -> None:
        self.watchdog.ensure_running()

    def flush(self, timeout: float | None = None) -> bool:
        logger = self._logger
        return True if logger is None else logger.flush(timeout)

    def hurry(self) -> None:
        if self._logger is not None:
            self._logger.hurry()

    def shutdown(self, reason: str) -> bool:
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._logger is None:
            return True
        complete = self._logger.shutdown(self.settings.shutdown_grace_seconds)
        self.record_summary()
        return complete

    def settle(self, reason: str) -> bool:
        if self._logger is None:
            return True
        still_open = len(self.tracer.live)
        if still_open:
            log.warning("routetrace: %d trace(s) still open at %s; written when they end, lost "
                        "if the process is killed first", still_open, reason)
        complete = self._logger.drain(self.settings.shutdown_grace_seconds,
                                      f"{reason} before the backend took it", when=reason)
        self.record_summary()
        return complete

    def record_summary(self) -> None:
        """Leave this process's export counts beside the spool when they show anything but
        traces written (``routetrace stats`` reads them after the process is gone)."""
        logger = self._logger
        if logger is None or not logger.summary_due():
            return
        stats = logger.counts()
        stats["lost"] = stats["pending"]
        try:
            record_export_summary(self.tracer.spool_dir(), stats, logger.summary_name)
        except Exception:
            log.error("routetrace: could not record the export summary (%s); the counts "
                      "were: %s", self.tracer.spool_dir(), stats, exc_info=True)

    def stop(self) -> None:
        if self._logger is not None:
            self._logger.stop_workers()
        if self._watchdog is not None:
            self._watchdog.stop()

    def stats(self) -> dict[str, Any]:
        stats = self._logger.counts() if self._logger is not None else {}
        stats["watchdog_aborted"] = 0 if self._watchdog is None else self._watchdog.aborted
        return stats

    def after_fork_in_child(self) -> None:
        """The parent keeps and writes what it queued; the child starts its own, empty."""
        self._lock = threading.Lock()
        if self._logger is not None:
            self._logger.after_fork_in_child()
        self._watchdog = None
