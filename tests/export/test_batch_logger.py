"""The async batch logger: hand-off, batching, retry, spool, overflow, flush.

The flaky and blocked backends below wrap the real local store (a real SQLite file) and only
add failures or a gate in front of it.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import pytest

import routetrace
from routetrace.backends.base import BackendError
from routetrace.backends.local import LocalStore
from routetrace.core.tracer import Tracer
from routetrace.export import spool


class FlakyStore(LocalStore):
    """Fails the first ``failures`` writes, then behaves."""

    def __init__(self, path, failures: int, retry_after: float | None = None) -> None:
        super().__init__(path)
        self.failures = failures
        self.retry_after = retry_after
        self.attempts = 0
        self.written_batches: list[int] = []

    def write_traces(self, experiment, traces):
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise BackendError("simulated outage", retry_after=self.retry_after)
        super().write_traces(experiment, traces)
        self.written_batches.append(len(traces))


class GatedStore(LocalStore):
    """Blocks every write until the test opens the gate."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write_traces(self, experiment, traces):
        self.entered.set()
        assert self.gate.wait(30)
        super().write_traces(experiment, traces)


def _use(tracer: Tracer, backend) -> None:
    tracer.tracking_uri = str(backend.db_path.parent)
    tracer._backend = backend


def _produce(n: int, prefix: str = "t") -> list[str]:
    ids = []
    for i in range(n):
        with routetrace.start_span(f"{prefix}{i}") as span:
            pass
        ids.append(span.trace_id)
    return ids


def _ids(backend) -> list[str]:
    return [t.info.trace_id for t in backend.search_traces(max_results=100_000)]


def test_handoff_is_non_blocking_even_when_the_backend_hangs(tracer, tmp_path):
    backend = GatedStore(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    _produce(1)
    assert backend.entered.wait(10)  # the worker is stuck inside write_traces
    started = time.perf_counter()
    _produce(200)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # 200 traces were handed off while the only worker is blocked
    assert routetrace.flush(timeout=0.05) is False  # and flush says it could not finish
    backend.gate.set()
    assert routetrace.flush(timeout=30) is True
    assert len(_ids(backend)) == 201


def test_batches_are_grouped_by_experiment_one_write_each(tracer, tmp_path):
    backend = GatedStore(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    writes: list[tuple[str, int]] = []
    original = LocalStore.write_traces

    def record(self, experiment, traces):
        writes.append((experiment.name, len(traces)))
        original(self, experiment, traces)

    backend.write_traces = record.__get__(backend)  # type: ignore[method-assign]
    backend.gate.set()
    # Hold the worker inside the first trace's processors so the next 90 queue up together.
    entered, hold = threading.Event(), threading.Event()
    tracer.processors = (lambda span: (entered.set(), hold.wait(10)),)
    with routetrace.start_span("first"):
        pass
    assert entered.wait(10)
    for i in range(90):
        destination = routetrace.Experiment(name=f"exp{i % 3}")
        with routetrace.start_span(f"t{i}", trace_destination=destination):
            pass
    hold.set()
    assert routetrace.flush(30)
    assert writes == [("Default", 1), ("exp0", 30), ("exp1", 30), ("exp2", 30)]


def test_steady_traffic_is_written_in_few_writes_and_soon_without_a_flush(tracer, tmp_path):
    # Under steady traffic the worker lets batches fill for up to 0.1 s (a write has a fixed
    # cost), but no longer: every trace is in the store well within a second, no flush().
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=0)
    _use(tracer, backend)
    for _ in range(250):  # ~0.5 s of traffic, a trace every ~2 ms
        _produce(1)
        time.sleep(0.002)
    last = time.monotonic()
    while sum(backend.written_batches) < 250 and time.monotonic() < last + 10:
        time.sleep(0.005)
    waited = time.monotonic() - last
    assert sum(backend.written_batches) == 250
    assert len(backend.written_batches) <= 25, backend.written_batches  # 5 ms: ~100 writes
    assert waited < 1.0, waited


def test_failing_backend_recovers_every_trace_written_once(tracer, tmp_path):
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=3)
    _use(tracer, backend)
    ids = _produce(50)
    assert routetrace.flush(timeout=30)
    assert sorted(_ids(backend)) == sorted(ids)
    stats = routetrace.get_export_stats()
    assert stats["written"] == 50
    assert stats["retried"] >= 3
    assert stats["spooled"] == 0 and stats["dropped"] == 0


def test_retry_after_is_honoured(tracer, tmp_path):
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=1, retry_after=0.5)
    _use(tracer, backend)
    started = time.monotonic()
    _produce(1)
    assert routetrace.flush(timeout=10)
    assert time.monotonic() - started >= 0.5
    assert backend.attempts == 2


def test_backend_down_past_retry_timeout_is_spooled_then_replayed_once(reset_tracer, tmp_path):
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="0.3")
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=10**9)
    _use(tracer, backend)
    ids = _produce(20)
    assert routetrace.flush(timeout=30)  # nothing pending: all spooled
    stats = routetrace.get_export_stats()
    assert stats["spooled"] == 20 and stats["written"] == 0
    files = spool.spooled_files(backend.spool_dir)
    assert files and sum(len(spool.read_spool_file(f)[1]) for f in files) == 20

    healthy = LocalStore(backend.db_path)
    result = routetrace.replay_spool(backend.spool_dir, backend=healthy)
    assert result.ok and result.traces == 20
    assert sorted(_ids(healthy)) == sorted(ids)
    again = routetrace.replay_spool(backend.spool_dir, backend=healthy)
    assert again.traces == 0
    assert sorted(_ids(healthy)) == sorted(ids)


def test_non_retryable_error_is_spooled_at_once(tracer, tmp_path):
    class Rejecting(LocalStore):
        def write_traces(self, experiment, traces):
            raise BackendError("401 unauthorized", retryable=False)

    backend = Rejecting(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    _produce(3)
    assert routetrace.flush(timeout=10)
    stats = routetrace.get_export_stats()
    assert stats["spooled"] == 3 and stats["retried"] == 0


def test_queue_overflow_counts_exactly(reset_tracer, tmp_path, caplog):
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="10")
    backend = GatedStore(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    _produce(1)
    assert backend.entered.wait(10)  # worker blocked with 1 trace in flight
    produced = 1 + 500
    _produce(500)
    stats = routetrace.get_export_stats()
    assert stats["dropped"] == 500 - 10
    assert "export queue full" in caplog.text
    assert caplog.text.count("export queue full") == 1  # rate-limited
    backend.gate.set()
    assert routetrace.flush(timeout=30)
    stats = routetrace.get_export_stats()
    written = len(_ids(backend))
    assert written == stats["written"] == 11
    assert stats["dropped"] + written == produced


def test_memory_stays_bounded_while_the_backend_is_down(reset_tracer, tmp_path):
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="100")
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=10**9)
    _use(tracer, backend)
    for _ in range(20):
        _produce(100)
        time.sleep(0.01)
    logger = tracer.exporter.logger
    assert len(logger.queue) <= 100
    assert logger.retry.traces <= 100 + 100  # bound plus at most one batch in hand
    stats = routetrace.get_export_stats()
    assert stats["dropped"] + stats["spooled"] + stats["pending"] + stats["written"] == 2000


def test_recovery_replays_what_was_spooled_during_the_outage(reset_tracer, tmp_path):
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="20")
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=10**9)
    _use(tracer, backend)
    ids = []
    for _ in range(10):
        ids += _produce(10)
        time.sleep(0.02)  # keep under the queue bound: the overflow goes to the retry list
    assert routetrace.get_export_stats()["spooled"] > 0
    backend.failures = 0
    ids += _produce(1)
    assert routetrace.flush(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_ids(backend)) < len(ids):
        time.sleep(0.05)
    stats = routetrace.get_export_stats()
    assert stats["dropped"] == 0
    assert sorted(_ids(backend)) == sorted(ids)
    assert not spool.spooled_files(backend.spool_dir)


def test_flush_reports_timeout_and_success(tracer, tmp_path):
    assert routetrace.flush(timeout=0) is True  # nothing queued yet
    backend = GatedStore(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    _produce(3)
    assert routetrace.flush(timeout=0.1) is False
    backend.gate.set()
    assert routetrace.flush(timeout=10) is True


def test_sync_mode_writes_on_the_calling_thread(reset_tracer):
    tracer = reset_tracer(MLFLOW_ENABLE_ASYNC_TRACE_LOGGING="false")
    seen = []
    routetrace.configure(span_processors=[lambda span: seen.append(threading.current_thread())])
    _produce(2)
    assert seen == [threading.current_thread()] * 2
    # written before flush is even called
    assert len(tracer.backend.search_traces()) == 2
    assert not any(t.name.startswith("routetrace-export") for t in threading.enumerate()
                   if t.is_alive() and tracer.exporter._logger is not None
                   and t in tracer.exporter.logger.threads)
    routetrace.enable_async_logging(True)
    _produce(1)
    assert routetrace.flush()
    assert len(tracer.backend.search_traces()) == 3


def test_shutdown_spools_what_the_grace_period_could_not_write(reset_tracer, tmp_path):
    tracer = reset_tracer(ROUTETRACE_SHUTDOWN_GRACE_SECONDS="0.2")
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=10**9)
    _use(tracer, backend)
    _produce(5)
    with routetrace.start_span("still-open"):
        complete = tracer.shutdown()
    assert complete is False
    files = spool.spooled_files(backend.spool_dir)
    traces = [t for f in files for t in spool.read_spool_file(f)[1]]
    names = sorted(t.root_span.name for t in traces)
    assert names == sorted([f"t{i}" for i in range(5)] + ["still-open"])
    open_one = next(t for t in traces if t.root_span.name == "still-open")
    assert open_one.info.state == "ERROR"
    assert open_one.root_span.events[0].name == "exit"


def test_a_trace_that_ends_after_shutdown_is_written_at_once(tracer):
    _produce(1)
    assert tracer.shutdown() is True
    after = _produce(1, prefix="after the exit flush")  # no worker takes it from the queue
    assert tracer.exporter.logger.queue.busy() is False
    assert after[0] in _ids(tracer.backend)
    assert tracer.exporter.logger.counts()["written"] == 2


@pytest.mark.parametrize("workers", ["1", "4"])
def test_many_threads_producing_lose_nothing(reset_tracer, workers):
    tracer = reset_tracer(MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS=workers,
                          MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="100000")

    def produce(k):
        for i in range(250):
            with routetrace.start_span(f"th{k}-{i}"):
                pass

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert routetrace.flush(timeout=60)
    assert tracer.backend.count_traces() == 2000
    stats = routetrace.get_export_stats()
    assert stats["written"] == 2000 and stats["queued"] == 2000 and stats["dropped"] == 0


def test_a_sync_write_the_backend_refuses_is_spooled_and_counted(tracer, tmp_path, monkeypatch):
    backend = FlakyStore(tmp_path / "s" / "db.sqlite", failures=1)
    _use(tracer, backend)
    logger = tracer.exporter.logger
    ended = []
    monkeypatch.setattr(logger, "put", ended.append)  # keep the ended traces off the queue
    _produce(2)
    for trace in ended:
        logger.write_sync(trace)
    assert backend.attempts == 2
    assert len(_ids(backend)) == 1
    assert len(spool.spooled_files(backend.spool_dir)) == 1
    counts = logger.counts()
    assert (counts["queued"], counts["written"], counts["spooled"], counts["pending"]) == (
        2, 1, 1, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_empty_with_free_locks_and_counts_of_its_own(tracer, tmp_path):
    backend = GatedStore(tmp_path / "s" / "db.sqlite")
    _use(tracer, backend)
    _produce(1)
    assert backend.entered.wait(10)  # the parent's worker holds one trace in hand
    _produce(2)  # and two wait on the queue
    logger = tracer.exporter.logger
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with logger.queue.lock:
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one thread, and a copy of a lock nobody will release
        try:
            logger.after_fork_in_child()
            counts = logger.counts()
            state = (counts["queued"], counts["pending"], len(logger.queue), logger.threads,
                     logger.closed)
            os.write(write, repr(state).encode())
        finally:
            os._exit(0)
    os.close(write)
    done.set()
    holder.join()
    try:
        ready, _, _ = select.select([read], [], [], 10)
        answer = os.read(read, 1000).decode() if ready else "no answer: the child hangs"
    finally:
        os.close(read)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert answer == repr((0, 0, 0, [], False))
    backend.gate.set()
    assert routetrace.flush(timeout=10)
    assert logger.counts()["written"] == 3  # the parent still writes its own
