"""The async batch logger: finished traces leave the request path through a bounded queue.

It composes the parts of the export, one job each: the bounded queue with exact accounting
(:mod:`~routetrace.export.queue`), the workers that group and write
(:mod:`~routetrace.export.worker`, :mod:`~routetrace.export.groups`), the retry policy
(:mod:`~routetrace.export.retry`), the spool (:mod:`~routetrace.export.spooler`) and the
counts (:mod:`~routetrace.export.stats`). Here: flush, shutdown, sync writes and fork.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from routetrace.export.groups import Group, build, group_traces, write_now
from routetrace.export.queue import TraceQueue
from routetrace.export.retry import RetryList
from routetrace.export.spooler import Spooler
from routetrace.export.stats import ExportStats
from routetrace.export.worker import Workers

if TYPE_CHECKING:
    from collections.abc import Callable

    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.sink import Sink

__all__ = ["BatchLogger", "ExportStats"]

log = logging.getLogger("routetrace")

BATCH_SIZE = 500


class BatchLogger:
    # The request path calls the queue's ``put`` directly (bound in ``_assemble``): it runs
    # once per request, and a forwarding method here would add a call to each. Once the
    # workers are closed, ``put`` is ``_put_closed`` instead: nothing would take the trace.
    put: Callable[[LiveTrace], bool]

    def __init__(
        self,
        *,
        max_queue_size: int,
        max_workers: int,
        retry_timeout: float,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.max_queue_size = max_queue_size
        self.max_workers = max_workers
        self.retry_timeout = retry_timeout
        self.batch_size = batch_size
        self._assemble()

    def _assemble(self) -> None:
        """Fresh parts: nothing queued, no thread, new locks, zero counts."""
        # One lock for the queue's accounting, the retry list and the counters; flush waits on
        # it for a change.
        lock = threading.Condition(threading.Lock())
        self.stats = ExportStats()
        self.queue = TraceQueue(
            max_size=self.max_queue_size,
            wake_at=max(1, min(self.batch_size, self.max_queue_size // 2)),
            lock=lock, stats=self.stats, start_workers=self._start_workers,
        )
        self.put = self.queue.put
        self._spooler = Spooler(lock=lock, stats=self.stats)
        self.retry = RetryList(
            lock=lock, max_traces=self.max_queue_size,
            # a group is at most a batch, and small enough that several fill the list, so the
            # oldest can be spooled without spooling everything
            group_cap=min(self.batch_size, max(1, self.max_queue_size // 2)),
            retry_timeout=self.retry_timeout, spool=self._spooler.spool,
        )
        self._workers = Workers(
            queue=self.queue, retry=self.retry, spooler=self._spooler, stats=self.stats,
            max_workers=self.max_workers, batch_size=self.batch_size,
        )
        self._lock = lock
        # Names this process's export summary file: rewritten, never added to, by each drain.
        self.summary_name = f"{time.time_ns()}-{os.getpid()}"

    def _start_workers(self, backend: Sink) -> None:
        self._workers.start(backend)

    @property
    def closed(self) -> bool:
        return self._workers.closed

    def _put_closed(self, trace: LiveTrace) -> bool:
        """``put`` after the workers closed (a trace that ends after the exit flush): written
        now, on the calling thread."""
        self.write_sync(trace)
        return True

    @property
    def threads(self) -> list[threading.Thread]:
        """The worker threads started so far."""
        return self._workers.threads

    def write_sync(self, trace: LiveTrace) -> None:
        """Build and write ``trace`` now, on the calling thread; spool it when the write fails.
        Counted like a queued trace; never raises."""
        record = build(trace)
        if record is None:
            with self._lock:
                self.stats.failed += 1
            return
        try:
            write_now(trace.backend, trace.destination, [record])
        except Exception as exc:
            self._spooler.spool(Group(trace.backend, trace.destination, [record], [0]), str(exc))
            return
        with self._lock:
            self.stats.written += 1

    def hurry(self) -> None:
        """Make a lingering or sleeping worker look at the queue now (the process is ending)."""
        self.queue.wake.set()

    # -- flush and shutdown -------------------------------------------------------------
    def _oldest_open_seq(self) -> float:
        return min(self.queue.oldest_open_seq(), self.retry.oldest_seq())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every trace queued before this call is written (or spooled).

        Returns True when that happened, False when ``timeout`` seconds passed first.
        """
        with self._lock:
            target = self.queue.next_seq()  # every earlier trace has a smaller seq
        deadline = None if timeout is None else time.monotonic() + timeout
        self.hurry()
        with self._lock:
            while self._oldest_open_seq() < target:
                if not self._workers.started:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(0.05 if remaining is None else min(0.05, remaining))
                self.hurry()
        return self._oldest_open_seq() >= target

    def shutdown(self, grace: float) -> bool:
        """Flush within ``grace`` seconds; spool whatever is still waiting; stop the workers."""
        if self.closed:
            return True
        return self.drain(grace, "process is exiting before the backend took it", final=True)

    def drain(self, grace: float, reason: str, *, final: bool = False,
              when: str = "shutdown") -> bool:
        """Flush within ``grace`` seconds, then spool whatever is still waiting, so that every
        trace queued so far is written, spooled or counted. Unless ``final``, the workers keep
        running: a server that ends the app's lifespan may still start it again."""
        workers = self._workers
        complete = self.flush(grace) if workers.started else True
        workers.closing = True
        with self._lock:
            leftovers = self.queue.take_all()
            pending = self.retry.take_all()
        grouped = group_traces(leftovers)
        if grouped.failed:
            with self._lock:
                self.stats.failed += grouped.failed
        for group in [*pending, *grouped.groups]:
            self._spooler.spool(group, reason)
        if final:
            workers.closed = True
            self.put = self._put_closed
        else:
            workers.closing = False
        self.hurry()
        if self.summary_due():
            counts = self.counts()
            log.warning("routetrace: export summary at %s: %d written, %d spooled (%d of them "
                        "replayed since), %d dropped (queue full), %d failed, %d still being "
                        "written", when, counts["written"], counts["spooled"],
                        counts["replayed"], counts["dropped"], counts["failed"],
                        counts["pending"])
        return complete and not leftovers and not pending

    def summary_due(self) -> bool:
        """True when the counts say something a later ``routetrace stats`` should show: a
        trace not written (dropped, failed, still spooled, still waiting)."""
        s = self.stats
        return bool(s.dropped or s.spooled > s.replayed or s.failed or self.queue.busy()
                    or self.retry)

    def stop_workers(self, timeout: float = 5.0) -> None:
        """Stop the worker threads (after ``shutdown``, or when a tracer is replaced)."""
        self.put = self._put_closed
        self._workers.stop(timeout)

    def counts(self) -> dict[str, Any]:
        """The export counts, with the traces still waiting as ``pending``."""
        with self._lock:
            return self.stats.with_pending(self.queue.open_count() + self.retry.traces)

    def after_fork_in_child(self) -> None:
        """The parent keeps and writes its queue; the child starts empty, with new locks, no
        threads and its own counts."""
        self._assemble()
