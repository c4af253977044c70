"""The bounded queue between the request path and the export workers, with exact accounting.

``put`` is the request path: one length check, one ``deque.append``, and an ``Event.set`` only
when the workers sleep or a burst reaches ``wake_at``. No lock, no I/O, never blocks; a full
queue drops the trace and counts it.

Every accepted trace gets a sequence number. A trace is on the queue, in a worker's hands
(``take``/``hold`` until ``done_with``) or in the retry list, so ``flush`` waits for exactly
the traces queued before it by watching the smallest sequence number still open.

One lock (a ``Condition``) is shared with the retry list and the counters: moving a group
between "in hand" and "waiting to retry" is one step under it, never a moment where a flush
could see it nowhere. Methods documented "lock held" expect the caller to hold it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.sink import Sink
    from routetrace.export.stats import ExportStats

__all__ = ["TraceQueue"]

log = logging.getLogger("routetrace")

_DROP_WARNING_INTERVAL = 60.0


class _InHand(NamedTuple):
    min_seq: int
    size: int


class TraceQueue:
    def __init__(self, *, max_size: int, wake_at: int, lock: threading.Condition,
                 stats: ExportStats, start_workers: Callable[[Sink], None]) -> None:
        self.max_size = max_size
        self.lock = lock
        # Set to make a worker look at the queue now; workers wait on it.
        self.wake = threading.Event()
        # True while the workers sleep (and before they exist): the next put wakes them.
        self.sleeping = True
        # A queue this long wakes a lingering worker: a burst must not overflow it.
        self.wake_at = wake_at
        self._items: deque[LiveTrace] = deque()
        self._seq = itertools.count(1)
        self._in_hand: dict[int, _InHand] = {}  # id(batch or group) -> its oldest seq, size
        self._stats = stats
        self._start_workers = start_workers
        self._last_drop_warning = -1e9

    def __len__(self) -> int:
        return len(self._items)

    def put(self, trace: LiveTrace) -> bool:
        """Queue a finished trace. Never blocks; returns False (and counts) when full."""
        items = self._items
        if len(items) >= self.max_size:
            self._drop()
            return False
        trace.seq = next(self._seq)
        items.append(trace)
        if self.sleeping:
            self.sleeping = False
            self._start_workers(trace.backend)
            self.wake.set()
        elif len(items) >= self.wake_at and not self.wake.is_set():
            # A burst: do not let the lingering worker overflow the queue. (Event.set takes a
            # lock and notifies: not again while it is still set.)
            self.wake.set()
        return True

    def _drop(self) -> None:
        with self.lock:
            self._stats.dropped += 1
            now = time.monotonic()
            warn = now - self._last_drop_warning >= _DROP_WARNING_INTERVAL
            if warn:
                self._last_drop_warning = now
        if warn:
            log.warning(
                "routetrace: export queue full (%d traces); dropped a trace (%d dropped so "
                "far). Raise MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE or check the backend. "
                "This warning repeats at most once a minute.",
                self.max_size, self._stats.dropped,
            )

    def take(self, limit: int) -> list[LiveTrace]:
        """Up to ``limit`` traces, oldest first, held in hand until ``done_with(batch)``."""
        batch: list[LiveTrace] = []
        items = self._items
        with self.lock:
            while items and len(batch) < limit:
                batch.append(items.popleft())
            if batch:
                self._in_hand[id(batch)] = _InHand(min(t.seq for t in batch), len(batch))
        return batch

    def take_all(self) -> list[LiveTrace]:
        """Empty the queue, holding nothing in hand (lock held)."""
        items = list(self._items)
        self._items.clear()
        return items

    def hold(self, work: object, min_seq: int, size: int) -> None:
        """Count ``work`` (a group taken from the retry list) as in hand (lock held)."""
        self._in_hand[id(work)] = _InHand(min_seq, size)

    def done_with(self, work: object) -> None:
        """``work`` is written, spooled or waiting to retry: no longer in hand."""
        with self.lock:
            self._in_hand.pop(id(work), None)
            self.lock.notify_all()

    def next_seq(self) -> int:
        """A number larger than every trace queued so far."""
        return next(self._seq)

    def oldest_open_seq(self) -> float:
        """The smallest sequence number on the queue or in hand (lock held)."""
        oldest = min((t.seq for t in list(self._items)), default=float("inf"))
        if self._in_hand:
            oldest = min(oldest, min(h.min_seq for h in self._in_hand.values()))
        return oldest

    def open_count(self) -> int:
        """Traces on the queue or in hand (lock held)."""
        return len(self._items) + sum(h.size for h in self._in_hand.values())

    def busy(self) -> bool:
        return bool(self._items or self._in_hand)
