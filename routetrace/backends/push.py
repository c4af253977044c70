"""``push()``: move a local store (and its spool of failed batches) into another backend.

Each trace is sent exactly once per target, even when a push is interrupted and run again: a
ledger (``routetrace-pushed.sqlite`` next to the source store, one row per (target, trace id))
records a trace only after the target accepted it. A trace that was in flight when the push
was interrupted is not in the ledger and is sent again; that is safe because the targets that
can be read back upsert by trace id (the MLflow server keys spans by (trace id, span id) and
trace infos by trace id; the local store merges by trace id), so the resend completes a
half-written trace instead of duplicating it. For OTLP collectors and files, which cannot be
checked, at most the one in-flight batch may be repeated downstream.

The CLI's ``routetrace push --from ./mlruns --to http://mlflow:5000`` calls this function.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routetrace.backends.base import Backend
from routetrace.backends.local import LocalStore
from routetrace.core.destination import Experiment
from routetrace.core.model import Trace
from routetrace.export import spool

__all__ = ["LEDGER_FILENAME", "PushResult", "push"]

log = logging.getLogger("routetrace")

LEDGER_FILENAME = "routetrace-pushed.sqlite"
_PAGE = 200


@dataclass
class PushResult:
    """What a push did: ``pushed`` traces sent now, ``skipped`` already sent by an earlier push."""

    total: int = 0
    pushed: int = 0
    skipped: int = 0
    spool_files: int = 0
    spool_traces: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class _Ledger:
    """Which trace ids already reached which target (keyed by the target's redacted URI)."""

    def __init__(self, path: Path, target: str) -> None:
        self.target = target
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS pushed (target TEXT NOT NULL, trace_id TEXT NOT NULL, "
            "pushed_at INTEGER NOT NULL, PRIMARY KEY (target, trace_id)) WITHOUT ROWID"
        )

    def done(self, trace_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(trace_ids), 500):
            chunk = trace_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self.conn.execute(
                f"SELECT trace_id FROM pushed WHERE target = ? AND trace_id IN ({marks})",
                [self.target, *chunk],
            ))
        return found

    def record(self, trace_ids: list[str]) -> None:
        now = int(time.time() * 1000)
        self.conn.executemany(
            "INSERT OR IGNORE INTO pushed (target, trace_id, pushed_at) VALUES (?, ?, ?)",
            [(self.target, t, now) for t in trace_ids],
        )

    def close(self) -> None:
        self.conn.close()


def _open_source(source: LocalStore | str | os.PathLike[str]) -> LocalStore:
    if isinstance(source, LocalStore):
        return source
    store = LocalStore.from_uri(os.fspath(source))
    if not store.db_path.exists():
        raise ValueError(f"{os.fspath(source)!r} is not a routetrace local store "
                         f"(no {store.db_path.name} in it)")
    return store


def _open_target(target: Backend | str) -> Backend:
    if isinstance(target, Backend):
        return target
    from routetrace.backends import backend_for_uri

    return backend_for_uri(target)


def _spool_files(store: LocalStore) -> list[Path]:
    """Spooled batches of the store and of the remote backends that spooled under it."""
    root = store.spool_dir
    if not root.is_dir():
        return []
    dirs = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return [f for d in dirs for f in spool.spooled_files(d)]


def push(
    source: LocalStore | str | os.PathLike[str],
    target: Backend | str,
    *,
    experiment: str | None = None,
    since_ms: int | None = None,
    include_spool: bool = True,
    progress: Callable[[int, int], Any] | None = None,
) -> PushResult:
    """Send every trace of ``source`` (and its spool) to ``target``, each exactly once.

    ``experiment`` limits the push to one experiment (by name), ``since_ms`` to traces that
    started at or after that time (ms since the epoch). ``progress(done, total)`` is called
    after each batch. Run it again after an interruption: what already arrived is skipped.

    >>> push("./mlruns", "http://mlflow:5000", progress=lambda d, t: print(d, "/", t))
    """
    started = time.monotonic()
    store = _open_source(source)
    backend = _open_target(target)
    if isinstance(backend, LocalStore) and backend.db_path == store.db_path:
        raise ValueError("push needs a target other than its source")
    ledger = _Ledger(store.db_path.parent / LEDGER_FILENAME, backend.uri)
    result = PushResult()
    try:
        exp_ids = _source_experiments(store, experiment)
        filter_string = f"trace.timestamp_ms >= {int(since_ms)}" if since_ms is not None else None
        if exp_ids is not None and not exp_ids:
            stored = 0
        else:
            stored = store.count_traces(experiment_ids=exp_ids, filter_string=filter_string)
        spool_batches = list(_read_spool(store, experiment)) if include_spool else []
        result.total = stored + sum(len(traces) for _, _, traces in spool_batches)
        done = 0
        if progress:
            progress(0, result.total)
        if stored:
            for page in _pages(store, exp_ids, filter_string):
                sent, skipped = _send(backend, ledger, page, since_ms=None)
                result.pushed += sent
                result.skipped += skipped
                done += len(page)
                if progress:
                    progress(done, result.total)
        for path, header, traces in spool_batches:
            try:
                sent, skipped = _send(backend, ledger, traces, since_ms=since_ms,
                                      destination=spool.experiment_of(header))
            except Exception as exc:
                result.failed.append(f"{path.name}: {exc}")
                log.warning("routetrace: pushing spooled batch %s failed: %s", path, exc)
                continue
            path.unlink(missing_ok=True)  # every trace in it reached the target
            result.pushed += sent
            result.skipped += skipped
            result.spool_files += 1
            result.spool_traces += sent
            done += len(traces)
            if progress:
                progress(done, result.total)
    finally:
        ledger.close()
        result.seconds = time.monotonic() - started
    return result


def _source_experiments(store: LocalStore, name: str | None) -> list[str] | None:
    if name is None:
        return None
    return [e.experiment_id for e in store.list_experiments() if e.name == name]


def _pages(store: LocalStore, exp_ids: list[str] | None,
           filter_string: str | None) -> Iterator[list[Trace]]:
    # Oldest first with a stable tiebreak, so offset paging is consistent while new traces
    # keep arriving in the source (they sort after what was already read).
    offset = 0
    while True:
        page = store.search_traces(
            experiment_ids=exp_ids, filter_string=filter_string, max_results=_PAGE,
            order_by=["timestamp_ms ASC"], offset=offset,
        )
        if not page:
            return
        yield page
        offset += len(page)


def _read_spool(store: LocalStore, experiment: str | None) -> Iterator[tuple[Path, dict, list]]:
    for path in _spool_files(store):
        try:
            header, traces = spool.read_spool_file(path)
        except (OSError, ValueError) as exc:
            log.warning("routetrace: skipping unreadable spool file %s: %s", path, exc)
            continue
        if experiment is not None and header.get("experiment", {}).get("name") != experiment:
            continue
        yield path, header, traces


def _send(backend: Backend, ledger: _Ledger, traces: list[Trace], *, since_ms: int | None,
          destination: Experiment | None = None) -> tuple[int, int]:
    """Write the traces the ledger does not know yet; returns (sent, skipped)."""
    if since_ms is not None:
        traces = [t for t in traces if t.info.request_time >= since_ms]
    already = ledger.done([t.info.trace_id for t in traces])
    todo = [t for t in traces if t.info.trace_id not in already]
    groups: dict[str, tuple[Experiment, list[Trace]]] = {}
    for trace in todo:
        dest = destination or Experiment(name=trace.info.experiment_name or "Default")
        groups.setdefault(dest.key, (dest, []))[1].append(trace)
    for dest, group in groups.values():
        info = backend.resolve_experiment(dest)
        for trace in group:
            trace.info.experiment_id = info.experiment_id
            trace.info.experiment_name = info.name
        backend.write_traces(info, group)
        ledger.record([t.info.trace_id for t in group])
    return len(todo), len(already)
