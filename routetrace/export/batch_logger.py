"""The async batch logger: finished traces leave the request path through a bounded queue.

Request path (``put``): one length check, one ``deque.append``, and an ``Event.set`` only when
the queue goes from empty to non-empty. No lock, no I/O, never blocks.

Workers take batches, build each trace once into a record (deferred captures, span
processors: :mod:`routetrace.core.build`), group them by (backend, experiment) and write
each group in one call, which the backend turns into its final form. A failed write does not
block the worker: the group waits in a retry list with exponential backoff and jitter, and
new batches for a failing backend join that list instead of hammering it. The retry list is
bounded like the queue; past its bound, and past the retry timeout, batches are spooled to
disk. When a backend recovers, the batches this process spooled for it are replayed.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routetrace.core.build import TraceRecord, record_trace, to_trace
from routetrace.core.model import Trace
from routetrace.export import spool

if TYPE_CHECKING:
    from routetrace.core.destination import Experiment
    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.sink import Sink

__all__ = ["BatchLogger", "ExportStats", "write_now"]

log = logging.getLogger("routetrace")

BATCH_SIZE = 500
# A busy worker lets the next batch fill for this long (or until the queue is half full)
# instead of waking for every trace: fewer, larger transactions, and the request path almost
# never has to signal it: a write's fixed cost is shared by more traces.
_LINGER = 0.1
# A worker with nothing to do for this long sleeps until a request wakes it.
_IDLE_AFTER = 0.2
_BACKOFF_INITIAL = 0.1
# A failing backend is probed at least this often (times 0.5-1.5 jitter), so a recovered one is
# found within seconds even when no new trace comes to try it; only one waiting batch per
# backend makes each probe (``_retry_due``), so a long retry list does not hammer it.
_BACKOFF_MAX = 2.0
_DROP_WARNING_INTERVAL = 60.0
_PROBE_INTERVAL = 1.0


@dataclass
class ExportStats:
    """What happened to the traces this process produced."""

    queued: int = 0  # accepted onto the queue
    written: int = 0  # stored by a backend
    dropped: int = 0  # refused because the queue was full
    retried: int = 0  # write attempts that failed and were retried
    spooled: int = 0  # written to the spool file for a later replay
    replayed: int = 0  # spooled traces written after the backend recovered
    failed: int = 0  # could not even be built or spooled (logged)
    pending: int = 0  # waiting: on the queue, being written, or in the retry list

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Group:
    backend: Sink
    destination: Experiment
    traces: list[TraceRecord]
    seqs: list[int]
    first_failure: float = 0.0
    next_attempt: float = 0.0
    attempts: int = 0
    error: str = ""
    min_seq: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_seq = min(self.seqs) if self.seqs else 0


def _build(live: LiveTrace, procs: tuple) -> TraceRecord | None:
    try:
        return record_trace(live, procs)
    except Exception:
        log.warning("routetrace: could not build trace %032x; dropped it", live.trace_id,
                    exc_info=True)
        return None
    finally:
        live.release()


def _as_traces(records: list[TraceRecord], destination: Experiment) -> list[Trace]:
    """The records as traces, to spool them."""
    return [to_trace(r) for r in records]


def write_now(backend: Sink, destination: Experiment,
              records: list[TraceRecord] | list[Trace]) -> None:
    """Resolve the experiment and write: the one write path, shared by workers, sync mode and
    the replay of a spool (which holds traces)."""
    backend.write_records(backend.resolve_experiment(destination), records)


class BatchLogger:
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
        self._queue: deque[LiveTrace] = deque()
        self._seq = itertools.count(1)
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards in-flight/pending bookkeeping and counters
        self._done = threading.Condition(self._lock)
        self._inflight: dict[int, tuple[int, int]] = {}  # id(batch) -> (min seq, size)
        self._pending: list[_Group] = []
        self._pending_traces = 0
        self._failing: set[int] = set()  # id(backend) currently failing
        self._last_probe: dict[int, float] = {}  # id(backend) -> when new traces last tried it
        self._spooled_by_backend: dict[int, list] = {}
        self._backend_locks: dict[int, threading.Lock] = {}
        self._threads: list[threading.Thread] = []
        self._started = False
        # True while the workers sleep (and before they exist): the next put wakes them.
        self._sleeping = True
        self._wake_at = max(1, min(batch_size, max_queue_size // 2))
        self._closing = False
        self._closed = False
        self._last_drop_warning = -1e9
        self.stats = ExportStats()
        # Names this process's export summary file: rewritten, never added to, by each drain.
        self.summary_name = f"{time.time_ns()}-{os.getpid()}"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- request path -------------------------------------------------------------------
    def put(self, trace: LiveTrace) -> bool:
        """Queue a finished trace. Never blocks; returns False (and counts) when full."""
        queue = self._queue
        if len(queue) >= self.max_queue_size:
            self._drop()
            return False
        trace.seq = next(self._seq)
        queue.append(trace)
        if self._sleeping:
            self._sleeping = False
            if not self._started:
                self._start(trace.backend)
            self._wake.set()
        elif len(queue) >= self._wake_at and not self._wake.is_set():
            # A burst: do not let the lingering worker overflow the queue. (Event.set takes a
            # lock and notifies: not again while it is still set.)
            self._wake.set()
        return True

    def _drop(self) -> None:
        with self._lock:
            self.stats.dropped += 1
            now = time.monotonic()
            warn = now - self._last_drop_warning >= _DROP_WARNING_INTERVAL
            if warn:
                self._last_drop_warning = now
        if warn:
            log.warning(
                "routetrace: export queue full (%d traces); dropped a trace (%d dropped so "
                "far). Raise MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE or check the backend. "
                "This warning repeats at most once a minute.",
                self.max_queue_size, self.stats.dropped,
            )

    # -- workers --------------------------------------------------------------------------
    def _start(self, backend: Sink) -> None:
        with self._lock:
            if self._started:
                return
            wanted = max(1, min(self.max_workers, backend.max_concurrency))
            for i in range(wanted):
                t = threading.Thread(target=self._run, name=f"routetrace-export-{i}", daemon=True)
                t.start()
                self._threads.append(t)
            self._started = True

    def _take(self) -> list[LiveTrace]:
        batch: list[LiveTrace] = []
        queue = self._queue
        with self._lock:
            while queue and len(batch) < self.batch_size:
                batch.append(queue.popleft())
            if batch:
                self._inflight[id(batch)] = (min(t.seq for t in batch), len(batch))
        return batch

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            self._wake.clear()
            delay = self._retry_due() if self._pending else 1.0
            batch = self._take()
            if batch:
                idle_since = None
                try:
                    self._process(batch)
                finally:
                    with self._done:
                        self._inflight.pop(id(batch), None)
                        self._done.notify_all()
                if len(self._queue) < self._wake_at and not self._closing:
                    self._wake.wait(_LINGER)
                continue
            if self._closed and not self._queue:
                return
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            if now - idle_since < _IDLE_AFTER or self._pending:
                self._wake.wait(min(delay, 0.05))
                continue
            self._sleeping = True
            if self._queue:  # a put raced with going to sleep: it may not have woken us
                self._sleeping = False
                continue
            self._wake.wait(delay)

    def _process(self, batch: list[LiveTrace]) -> None:
        groups: dict[tuple[int, str], _Group] = {}
        for live in batch:
            item = _build(live, live.processors)  # processors bound when the trace ended
            if item is None:
                with self._lock:
                    self.stats.failed += 1
                continue
            key = (id(live.backend), live.destination.key)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(live.backend, live.destination, [], [])
            group.traces.append(item)
            group.seqs.append(live.seq)
        for group in groups.values():
            group.min_seq = min(group.seqs)
            self._attempt(group)

    def _backend_lock(self, backend: Sink) -> threading.Lock:
        lock = self._backend_locks.get(id(backend))
        if lock is None:
            with self._lock:
                lock = self._backend_locks.setdefault(id(backend), threading.Lock())
        return lock

    def _attempt(self, group: _Group, *, from_retry: bool = False) -> None:
        backend = group.backend
        if not from_retry and id(backend) in self._failing and not self._closing:
            # New traces for a failing backend wait behind the retry list, except for one
            # probe a second: under load it finds a recovered backend before the retry list's
            # own backoff comes due, without hammering one that is still down.
            now = time.monotonic()
            if now - self._last_probe.get(id(backend), -1e9) < _PROBE_INTERVAL:
                self._defer(group, "backend is failing; queued behind earlier batches")
                return
            self._last_probe[id(backend)] = now
        try:
            if backend.max_concurrency == 1:
                with self._backend_lock(backend):
                    write_now(backend, group.destination, group.traces)
            else:
                write_now(backend, group.destination, group.traces)
        except Exception as exc:
            retryable = getattr(exc, "retryable", True)
            if not retryable or self._closing:
                self._spool(group, f"{exc}")
                return
            with self._lock:
                self.stats.retried += 1
                self._failing.add(id(backend))
            self._defer(group, str(exc), retry_after=getattr(exc, "retry_after", None))
            return
        recovered = False
        with self._done:
            self.stats.written += len(group.traces)
            if id(backend) in self._failing:
                self._failing.discard(id(backend))
                recovered = True
                for g in self._pending:  # the backend is back: retry the rest now
                    if g.backend is backend:
                        g.next_attempt = 0.0
            self._done.notify_all()
        if recovered:
            log.warning("routetrace: %s is reachable again; sending the traces held back",
                        backend.uri)
            self._replay_own_spool(backend)

    def _defer(self, group: _Group, error: str, retry_after: float | None = None) -> None:
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
        with self._done:
            self._pending.append(group)
            self._pending_traces += len(group.traces)
            overflow = self._trim_pending()
        for g in overflow:
            self._spool(g, f"retry list full while {g.backend.uri} is failing: {g.error}")

    def _coalesce(self, group: _Group) -> bool:
        """Join a waiting group of the same backend and experiment (up to a batch) instead of
        adding one more: under load, batches are small (often one trace), and after an outage
        hundreds of one-trace groups would each cost the recovered server a request."""
        key = group.destination.key
        cap = min(self.batch_size, max(1, self.max_queue_size // 2))  # several groups to spool
        with self._done:
            for g in self._pending:
                if (g.backend is group.backend and g.destination.key == key
                        and len(g.traces) + len(group.traces) <= cap):
                    g.traces.extend(group.traces)
                    g.seqs.extend(group.seqs)
                    g.min_seq = min(g.min_seq, group.min_seq)
                    if group.first_failure:
                        g.first_failure = min(g.first_failure, group.first_failure)
                    self._pending_traces += len(group.traces)
                    overflow = self._trim_pending()
                    break
            else:
                return False
        for g in overflow:
            self._spool(g, f"retry list full while {g.backend.uri} is failing: {g.error}")
        return True

    def _merged(self, groups: list[_Group]) -> list[_Group]:
        """Due groups of one backend and experiment as one write (up to a batch): groups that
        could not coalesce while another was being retried would otherwise cost a recovered
        server one request each, one after the other."""
        cap = min(self.batch_size, max(1, self.max_queue_size // 2))
        out: list[_Group] = []
        for g in groups:
            for m in out:
                if (m.backend is g.backend and m.destination.key == g.destination.key
                        and len(m.traces) + len(g.traces) <= cap):
                    m.traces.extend(g.traces)
                    m.seqs.extend(g.seqs)
                    m.min_seq = min(m.min_seq, g.min_seq)
                    failures = [f for f in (m.first_failure, g.first_failure) if f]
                    m.first_failure = min(failures, default=0.0)
                    break
            else:
                out.append(g)
        return out

    def _trim_pending(self) -> list[_Group]:
        """Memory stays bounded while a backend is down: the oldest groups past the bound
        leave the retry list (to be spooled by the caller, outside the lock)."""
        overflow: list[_Group] = []
        while self._pending_traces > self.max_queue_size and len(self._pending) > 1:
            oldest = self._pending.pop(0)
            self._pending_traces -= len(oldest.traces)
            overflow.append(oldest)
        return overflow

    def _retry_due(self) -> float:
        """Attempt the retries that are due; return how long to sleep until the next one."""
        now = time.monotonic()
        due: list[_Group] = []
        with self._lock:
            keep = []
            for g in self._pending:
                (due if g.next_attempt <= now or self._closing else keep).append(g)
            if due:
                self._pending = keep
                self._pending_traces -= sum(len(g.traces) for g in due)
                due = self._merged(due)
                for g in due:
                    self._inflight[id(g)] = (g.min_seq, len(g.traces))
            next_due = min((g.next_attempt for g in keep), default=now + 1.0)
        still_down: set[int] = set()
        for g in due:
            try:
                if id(g.backend) in still_down and not self._closing:
                    self._defer(g, g.error)  # this pass's probe failed: wait for the next
                    continue
                self._attempt(g, from_retry=True)
                if id(g.backend) in self._failing:
                    still_down.add(id(g.backend))
            finally:
                with self._done:
                    self._inflight.pop(id(g), None)
                    self._done.notify_all()
        return max(0.005, min(1.0, next_due - time.monotonic()))

    def _spool(self, group: _Group, reason: str) -> None:
        backend = group.backend
        try:
            path = spool.spool_batch(backend.spool_dir, backend.uri, group.destination,
                                     _as_traces(group.traces, group.destination))
        except Exception:
            log.error("routetrace: could not spool %d traces for %s (%s); they are lost",
                      len(group.traces), backend.uri, reason, exc_info=True)
            with self._done:
                self.stats.failed += len(group.traces)
                self._done.notify_all()
            return
        log.warning("routetrace: spooled %d traces to %s (%s); replay with "
                    "routetrace.replay_spool() or `routetrace push`",
                    len(group.traces), path, reason)
        with self._done:
            self.stats.spooled += len(group.traces)
            self._spooled_by_backend.setdefault(id(backend), []).append(path)
            self._done.notify_all()

    def _replay_own_spool(self, backend: Sink) -> None:
        with self._lock:
            paths = self._spooled_by_backend.pop(id(backend), [])
        for path in paths:
            if not path.exists():
                continue
            claimed = path.with_name(f".{path.stem}.replaying-auto")
            try:
                path.replace(claimed)
                header, traces = spool.read_spool_file(claimed)
                write_now(backend, spool.experiment_of(header), traces)
            except Exception as exc:
                if claimed.exists():
                    claimed.replace(path)
                log.warning("routetrace: replaying %s failed (%s); it stays spooled", path, exc)
                return
            claimed.unlink(missing_ok=True)
            with self._lock:
                self.stats.replayed += len(traces)

    # -- flush and shutdown -------------------------------------------------------------
    def _oldest_open_seq(self) -> float:
        oldest = min((t.seq for t in list(self._queue)), default=float("inf"))
        if self._inflight:
            oldest = min(oldest, min(v[0] for v in self._inflight.values()))
        if self._pending:
            oldest = min(oldest, min(g.min_seq for g in self._pending))
        return oldest

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every trace queued before this call is written (or spooled).

        Returns True when that happened, False when ``timeout`` seconds passed first.
        """
        with self._lock:
            target = next(self._seq)  # every earlier trace has a smaller seq
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._oldest_open_seq() < target:
                if not self._started:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(0.05 if remaining is None else min(0.05, remaining))
                self._wake.set()
        return self._oldest_open_seq() >= target

    def shutdown(self, grace: float) -> bool:
        """Flush within ``grace`` seconds; spool whatever is still waiting; stop the workers."""
        if self._closed:
            return True
        return self.drain(grace, "process is exiting before the backend took it", final=True)

    def drain(self, grace: float, reason: str, *, final: bool = False,
              when: str = "shutdown") -> bool:
        """Flush within ``grace`` seconds, then spool whatever is still waiting, so that every
        trace queued so far is written, spooled or counted. Unless ``final``, the workers keep
        running: a server that ends the app's lifespan may still start it again."""
        complete = self.flush(grace) if self._started else True
        self._closing = True
        leftovers: list[LiveTrace] = []
        with self._lock:
            while self._queue:
                leftovers.append(self._queue.popleft())
            pending, self._pending = self._pending, []
            self._pending_traces = 0
        groups: dict[tuple[int, str], _Group] = {}
        for live in leftovers:
            built = _build(live, live.processors)
            if built is None:
                with self._lock:
                    self.stats.failed += 1
                continue
            key = (id(live.backend), live.destination.key)
            group = groups.setdefault(key, _Group(live.backend, live.destination, [], [live.seq]))
            group.traces.append(built)
        for group in [*pending, *groups.values()]:
            self._spool(group, reason)
        if final:
            self._closed = True
        else:
            self._closing = False
        self._wake.set()
        if self.summary_due():
            stats = self.snapshot()
            log.warning("routetrace: export summary at %s: %d written, %d spooled (%d of them "
                        "replayed since), %d dropped (queue full), %d failed, %d still being "
                        "written", when, stats["written"],
                        stats["spooled"], stats["replayed"], stats["dropped"], stats["failed"],
                        stats["pending"])
        return complete and not leftovers and not pending

    def summary_due(self) -> bool:
        """True when the counts say something a later ``routetrace stats`` should show: a
        trace not written (dropped, failed, still spooled, still waiting)."""
        s = self.stats
        return bool(s.dropped or s.spooled > s.replayed or s.failed or self._queue
                    or self._inflight or self._pending)

    def stop_workers(self, timeout: float = 5.0) -> None:
        """Stop the worker threads (after ``shutdown``, or when a tracer is replaced)."""
        self._closed = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def write_sync(self, trace: LiveTrace) -> None:
        """Build and write ``trace`` now (synchronous logging); spool it when the write fails."""
        built = _build(trace, trace.processors)
        if built is None:
            self.stats.failed += 1
            return
        try:
            write_now(trace.backend, trace.destination, [built])
        except Exception as exc:
            self._spool(_Group(trace.backend, trace.destination, [built], [0]), str(exc))
            return
        self.stats.written += 1

    def hurry(self) -> None:
        """Wake the workers now (a SIGTERM is on its way)."""
        self._wake.set()

    def counts(self) -> dict[str, Any]:
        return self.snapshot()

    def after_fork_in_child(self) -> None:
        self._after_fork_in_child()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            stats = ExportStats(**self.stats.to_dict())
            stats.pending = (
                len(self._queue) + sum(v[1] for v in self._inflight.values())
                + self._pending_traces
            )
            stats.queued = stats.written + stats.spooled + stats.failed + stats.pending
        return stats.to_dict()

    def _after_fork_in_child(self) -> None:
        """The parent keeps and writes its queue; the child starts empty, with new locks."""
        self.__init__(  # type: ignore[misc]
            max_queue_size=self.max_queue_size, max_workers=self.max_workers,
            retry_timeout=self.retry_timeout,
            batch_size=self.batch_size,
        )
