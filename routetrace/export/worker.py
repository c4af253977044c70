"""The export workers: take batches off the queue, group them by (backend, experiment) and
write each group in one call, which the backend turns into its final form.

A failed write goes to the retry list; the worker moves on. Between batches each worker
attempts the retries that are due. Workers start with the first trace and sleep when there is
nothing to do, so an idle process costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from routetrace.export.groups import group_traces, write_now

if TYPE_CHECKING:
    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.sink import Sink
    from routetrace.export.groups import Group
    from routetrace.export.queue import TraceQueue
    from routetrace.export.retry import RetryList
    from routetrace.export.spooler import Spooler
    from routetrace.export.stats import ExportStats

__all__ = ["Workers"]

log = logging.getLogger("routetrace")

# A busy worker lets the next batch fill for this long (or until the queue is half full)
# instead of waking for every trace: a write's fixed cost (a transaction, a request) is shared
# by more traces, and the request path seldom has to signal the worker.
_LINGER = 0.1
# A worker with nothing to do for this long sleeps until a request wakes it.
_IDLE_AFTER = 0.2


class Workers:
    def __init__(self, *, queue: TraceQueue, retry: RetryList, spooler: Spooler,
                 stats: ExportStats, max_workers: int, batch_size: int) -> None:
        self.queue = queue
        self.retry = retry
        self.spooler = spooler
        self.max_workers = max_workers
        self.batch_size = batch_size
        self.threads: list[threading.Thread] = []
        self.started = False
        # Closing: every write failure spools at once and retries are all due (shutdown).
        self.closing = False
        # Closed: the workers exit once the queue is empty.
        self.closed = False
        self._lock = queue.lock
        self._stats = stats
        self._backend_locks: dict[int, threading.Lock] = {}

    def start(self, backend: Sink) -> None:
        """Start the threads (once): as many as asked for, at most what ``backend`` takes."""
        if self.started:
            return
        with self._lock:
            if self.started:
                return
            wanted = max(1, min(self.max_workers, backend.max_concurrency))
            for i in range(wanted):
                t = threading.Thread(target=self.run, name=f"routetrace-export-{i}", daemon=True)
                t.start()
                self.threads.append(t)
            self.started = True

    def stop(self, timeout: float) -> None:
        self.closed = True
        self.queue.wake.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run(self) -> None:
        queue, wake = self.queue, self.queue.wake
        idle_since: float | None = None
        while True:
            wake.clear()
            delay = self._retry_due() if self.retry else 1.0
            batch = queue.take(self.batch_size)
            if batch:
                idle_since = None
                try:
                    self.process(batch)
                finally:
                    queue.done_with(batch)
                if len(queue) < queue.wake_at and not self.closing:
                    wake.wait(_LINGER)
                continue
            if self.closed and not len(queue):
                return
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            if now - idle_since < _IDLE_AFTER or self.retry:
                wake.wait(min(delay, 0.05))
                continue
            queue.sleeping = True
            if len(queue):  # a put raced with going to sleep: it may not have woken us
                queue.sleeping = False
                continue
            wake.wait(delay)

    def process(self, batch: list[LiveTrace]) -> None:
        """Build, group and write one batch taken off the queue."""
        grouped = group_traces(batch)
        if grouped.failed:
            with self._lock:
                self._stats.failed += grouped.failed
        for group in grouped.groups:
            self.attempt(group)

    def attempt(self, group: Group, *, from_retry: bool = False) -> None:
        """Write ``group``; on failure retry it later or spool it. Never raises."""
        backend = group.backend
        if not from_retry and not self.closing and self.retry.holds_back(backend):
            self.retry.defer(group, "backend is failing; queued behind earlier batches")
            return
        try:
            if backend.max_concurrency == 1:
                with self._backend_lock(backend):
                    write_now(backend, group.destination, group.traces)
            else:
                write_now(backend, group.destination, group.traces)
        except Exception as exc:
            if not getattr(exc, "retryable", True) or self.closing:
                self.spooler.spool(group, f"{exc}")
                return
            with self._lock:
                self._stats.retried += 1
                self.retry.failed(backend)
            self.retry.defer(group, str(exc), retry_after=getattr(exc, "retry_after", None))
            return
        with self._lock:
            self._stats.written += len(group.traces)
            recovered = self.retry.succeeded(backend)
            self._lock.notify_all()
        if recovered:
            log.warning("routetrace: %s is reachable again; sending the traces held back",
                        backend.uri)
            self.spooler.replay_own(backend)

    def _backend_lock(self, backend: Sink) -> threading.Lock:
        """One write at a time to a backend that takes one (``max_concurrency == 1``)."""
        lock = self._backend_locks.get(id(backend))
        if lock is None:
            with self._lock:
                lock = self._backend_locks.setdefault(id(backend), threading.Lock())
        return lock

    def _retry_due(self) -> float:
        """Attempt the retries that are due; return how long to sleep until the next one."""
        now = time.monotonic()
        with self._lock:
            due = self.retry.take_due(now, everything=self.closing)
            for g in due:  # in hand before it leaves the list: a flush always sees it
                self.queue.hold(g, g.min_seq, len(g.traces))
            next_due = self.retry.next_due(now)
        still_down: set[int] = set()
        for g in due:
            try:
                if id(g.backend) in still_down and not self.closing:
                    self.retry.defer(g, g.error)  # this pass's probe failed: wait for the next
                    continue
                self.attempt(g, from_retry=True)
                if self.retry.is_failing(g.backend):
                    still_down.add(id(g.backend))
            finally:
                self.queue.done_with(g)
        return max(0.005, min(1.0, next_due - time.monotonic()))
