"""The retry policy: groups that failed to write wait here, with backoff, until they are
written or spooled.

A failed write does not block the worker: the group waits with exponential backoff and jitter,
and new traces for a failing backend join the waiting groups instead of hammering it, except
for one probe a second. Waiting groups of one backend and experiment coalesce up to a batch,
so a recovered server is not sent hundreds of one-trace requests. The list is bounded like the
queue: past its bound the oldest groups, and past the retry timeout any group, are spooled.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from routetrace.core.sink import Sink
    from routetrace.export.groups import Group

__all__ = ["RetryList"]

log = logging.getLogger("routetrace")

_BACKOFF_INITIAL = 0.1
# A failing backend is probed at least this often (times 0.5-1.5 jitter), so a recovered one is
# found within seconds even when no new trace comes to try it; only one waiting group per
# backend makes each probe (see the worker's retry pass), so a long list does not hammer it.
_BACKOFF_MAX = 2.0
# How often new traces for a failing backend may try it themselves: under load one of them
# finds a recovered backend before the retry list's own backoff comes due.
_PROBE_INTERVAL = 1.0


class RetryList:
    def __init__(self, *, lock: threading.Condition, max_traces: int, group_cap: int,
                 retry_timeout: float, spool: Callable[[Group, str], None]) -> None:
        self.retry_timeout = retry_timeout
        self.traces = 0  # traces waiting in the list
        self._lock = lock  # shared with the queue: see routetrace.export.queue
        self._max_traces = max_traces
        self._group_cap = group_cap
        self._spool = spool
        self._groups: list[Group] = []
        self._failing: set[int] = set()  # id(backend) currently failing
        self._last_probe: dict[int, float] = {}  # id(backend) -> when new traces last tried it

    def __bool__(self) -> bool:
        return bool(self._groups)

    def is_failing(self, backend: Sink) -> bool:
        return id(backend) in self._failing

    def holds_back(self, backend: Sink) -> bool:
        """Whether new traces for ``backend`` should wait behind the list rather than try it:
        true while it fails, except for one probe every ``_PROBE_INTERVAL``."""
        if id(backend) not in self._failing:
            return False
        now = time.monotonic()
        if now - self._last_probe.get(id(backend), -1e9) < _PROBE_INTERVAL:
            return True
        self._last_probe[id(backend)] = now
        return False

    def failed(self, backend: Sink) -> None:
        """A write to ``backend`` failed (lock held)."""
        self._failing.add(id(backend))

    def succeeded(self, backend: Sink) -> bool:
        """A write to ``backend`` succeeded (lock held): when it was failing, its waiting
        groups are due now. Returns True when it had been failing."""
        if id(backend) not in self._failing:
            return False
        self._failing.discard(id(backend))
        for g in self._groups:
            if g.backend is backend:
                g.next_attempt = 0.0
        return True

    def defer(self, group: Group, error: str, retry_after: float | None = None) -> None:
        """Let ``group`` wait for a later attempt (or spool it when its time is up)."""
        if self._coalesce(group):
            return
        now = time.monotonic()
        if not group.first_failure:
            group.first_failure = now
            log.warning("routetrace: writing %d traces to %s failed (%s); retrying for up to "
                        "%gs, then spooling to %s", len(group.traces), group.backend.uri, error,
                        self.retry_timeout, group.backend.spool_dir)
        group.attempts += 1
        group.error = error
        if now - group.first_failure >= self.retry_timeout:
            self._spool(group, f"gave up after {self.retry_timeout:g}s: {error}")
            return
        backoff = min(_BACKOFF_MAX, _BACKOFF_INITIAL * (2 ** min(group.attempts, 20)))
        backoff *= 0.5 + random.random()  # jitter: processes must not retry in lock-step
        if retry_after is not None:
            backoff = max(backoff, float(retry_after))
        group.next_attempt = now + backoff
        with self._lock:
            self._groups.append(group)
            self.traces += len(group.traces)
            overflow = self._trim()
        self._spool_overflow(overflow)

    def _coalesce(self, group: Group) -> bool:
        """Join a waiting group of the same backend and experiment (up to a batch) instead of
        adding one more: under load, batches are small (often one trace), and after an outage
        hundreds of one-trace groups would each cost the recovered server a request."""
        with self._lock:
            for g in self._groups:
                if self._joinable(g, group):
                    g.absorb(group)
                    self.traces += len(group.traces)
                    overflow = self._trim()
                    break
            else:
                return False
        self._spool_overflow(overflow)
        return True

    def _joinable(self, into: Group, group: Group) -> bool:
        return (into.backend is group.backend and into.destination.key == group.destination.key
                and len(into.traces) + len(group.traces) <= self._group_cap)

    def _merged(self, groups: list[Group]) -> list[Group]:
        """Due groups of one backend and experiment as one write (up to a batch): groups that
        could not coalesce while another was being retried would otherwise cost a recovered
        server one request each, one after the other."""
        out: list[Group] = []
        for g in groups:
            for m in out:
                if self._joinable(m, g):
                    m.absorb(g)
                    break
            else:
                out.append(g)
        return out

    def _trim(self) -> list[Group]:
        """Memory stays bounded while a backend is down: the oldest groups past the bound
        leave the list (to be spooled by the caller, outside the lock)."""
        overflow: list[Group] = []
        while self.traces > self._max_traces and len(self._groups) > 1:
            oldest = self._groups.pop(0)
            self.traces -= len(oldest.traces)
            overflow.append(oldest)
        return overflow

    def _spool_overflow(self, overflow: list[Group]) -> None:
        for g in overflow:
            self._spool(g, f"retry list full while {g.backend.uri} is failing: {g.error}")

    def take_due(self, now: float, everything: bool) -> list[Group]:
        """The groups due by ``now`` (all of them when ``everything``), merged (lock held)."""
        due: list[Group] = []
        keep: list[Group] = []
        for g in self._groups:
            (due if everything or g.next_attempt <= now else keep).append(g)
        if not due:
            return due
        self._groups = keep
        self.traces -= sum(len(g.traces) for g in due)
        return self._merged(due)

    def next_due(self, now: float) -> float:
        """When the next waiting group is due; a second from now when none waits (lock held)."""
        return min((g.next_attempt for g in self._groups), default=now + 1.0)

    def take_all(self) -> list[Group]:
        """Every waiting group, emptying the list (lock held)."""
        groups, self._groups = self._groups, []
        self.traces = 0
        return groups

    def oldest_seq(self) -> float:
        """The smallest sequence number waiting here (lock held)."""
        return min((g.min_seq for g in self._groups), default=float("inf"))
