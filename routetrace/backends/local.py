"""The embedded local store: one directory, one SQLite database in WAL mode.

Nothing to start. Several processes (gunicorn workers) may write at once: every write is one
``BEGIN IMMEDIATE`` transaction per batch, and SQLite's busy timeout serialises them. Trace
ids are primary keys, so writing a trace twice (a spool replayed after a crash) is harmless;
two halves of one distributed trace (the same ``traceparent`` continued by two requests) are
merged span by span.

The export worker hands over each trace built once (a
:class:`~routetrace.core.build.TraceRecord`) and it is stored in its final form: one row
of ``traces`` with the columns searches and listings read, plus a row per tag and metadata
entry. The spans, read only when a person opens a trace, are one JSON text per trace (a list
of arrays, inputs and outputs kept as the JSON text they were recorded as), encoded once on
the way in and decoded only by :meth:`LocalStore.get_trace` or a search that asks for spans.
Reading shows what was stored; it never builds anything.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from routetrace.backends import filters
from routetrace.backends.base import (
    Backend,
    BackendError,
    ExperimentInfo,
    check_delete_arguments,
    check_max_results,
)
from routetrace.core.build import (
    NAME_TAG,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    SpanRecord,
    TraceRecord,
    to_span,
    to_trace,
)
from routetrace.core.destination import Experiment
from routetrace.core.model import Trace, TraceData, TraceInfo, parse_trace_id

__all__ = ["LocalStore"]

log = logging.getLogger("routetrace")

DB_FILENAME = "routetrace.sqlite"
_BUSY_TIMEOUT_MS = 30_000
_CHUNK = 500
# PRAGMA user_version of a store this version writes: the layout of the ``spans`` column.
# A store of another layout is refused with a message (see ``_check_format``).
STORE_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    creation_time INTEGER,
    lifecycle_stage TEXT NOT NULL DEFAULT 'active'
);
INSERT OR IGNORE INTO experiments (experiment_id, name, creation_time) VALUES (0, 'Default', 0);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment_id INTEGER NOT NULL,
    name TEXT,
    start_time INTEGER,
    end_time INTEGER,
    status TEXT
);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    experiment_id INTEGER NOT NULL,
    name TEXT,
    request_time INTEGER NOT NULL,
    execution_duration INTEGER,
    state TEXT NOT NULL,
    request_preview TEXT,
    response_preview TEXT,
    run_id TEXT,
    span_count INTEGER NOT NULL DEFAULT 0,
    spans TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_experiment_time ON traces (experiment_id, request_time);
CREATE INDEX IF NOT EXISTS traces_by_run ON traces (run_id) WHERE run_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS trace_tags (
    trace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (trace_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trace_metadata (
    trace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (trace_id, key)
) WITHOUT ROWID;
"""

_INSERT_TRACE = (
    "INSERT INTO traces (trace_id, experiment_id, name, request_time, execution_duration, "
    "state, request_preview, response_preview, run_id, span_count, spans) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TRACE_COLUMNS = (
    "t.trace_id, t.experiment_id, e.name, t.request_time, t.execution_duration, t.state, "
    "t.request_preview, t.response_preview, t.run_id, t.span_count, t.name"
)


def _experiment_id(value: object) -> int:
    """An experiment id of this store: an integer SQLite can bind (64-bit)."""
    try:
        exp_id = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        exp_id = None
    if exp_id is None or not -(2**63) <= exp_id <= 2**63 - 1:
        text = str(value)
        shown = text if len(text) <= 30 else f"{text[:12]}… ({len(text)} characters)"
        raise ValueError(f"experiment id {shown!r} is not an id of the local store")
    return exp_id


def _locked(method):  # type: ignore[no-untyped-def]
    """Run a store method under the store's lock (see ``_sqlite_lock``)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self._sqlite_lock:
            return method(self, *args, **kwargs)

    return wrapper


class LocalStore(Backend):
    max_concurrency = 1

    def __init__(self, db_path: str | os.PathLike[str], *, uri: str | None = None) -> None:
        self.db_path = Path(db_path).expanduser().absolute()
        self.uri = uri or str(self.db_path.parent)
        if self.db_path.name == DB_FILENAME:
            self.spool_dir = self.db_path.parent / "spool"
        else:
            self.spool_dir = self.db_path.with_suffix(".spool")
        self._local = threading.local()
        self._pid = os.getpid()
        self._experiments: dict[str, ExperimentInfo] = {}
        self._initialised = False
        self._init_lock = threading.Lock()
        # Held around every SQLite call, and across os.fork: SQLite's mutexes and lock
        # bookkeeping are copied into a forked child, so a fork while another thread is
        # inside SQLite (opening, reading, writing) would leave the child stuck forever.
        self._sqlite_lock = threading.RLock()

    @classmethod
    def from_uri(cls, uri: str) -> LocalStore:
        """A directory path, ``file:/dir`` / ``file:///dir``, or ``sqlite:///path/db``."""
        if uri.startswith("sqlite:"):
            # SQLAlchemy's convention, as MLflow uses it: sqlite:///rel.db, sqlite:////abs.db
            if not uri.startswith("sqlite:///"):
                raise ValueError(
                    f"tracking URI {uri!r}: write sqlite:///relative.db or sqlite:////abs/path.db"
                )
            path = unquote(uri[len("sqlite:///") :])
            if not path or path == ":memory:":
                raise ValueError(
                    f"tracking URI {uri!r}: the local store needs a file, e.g. sqlite:///traces.db"
                )
            return cls(path, uri=uri)
        if uri.startswith("file:"):
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"tracking URI {uri!r}: file: URIs must point at this machine")
            directory = unquote(parts.path)
        else:
            directory = uri
        return cls(Path(directory) / DB_FILENAME, uri=uri)

    # -- connections --------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self.after_fork()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self._initialised:
                self._initialise()
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _initialise(self) -> None:
        with self._init_lock:
            if self._initialised:
                return
            try:
                conn = self._connect()
                for attempt in range(50):
                    try:
                        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                            conn.execute("PRAGMA journal_mode = WAL")
                        conn.execute("BEGIN IMMEDIATE")
                        self._check_format(conn)
                        conn.executescript(_SCHEMA.replace("\n;", ";"))  # commits
                        break
                    except sqlite3.OperationalError as exc:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        if "locked" not in str(exc) or attempt == 49:
                            raise
                        time.sleep(0.05)
                    except BackendError:
                        conn.close()
                        raise
                conn.close()
            except (sqlite3.Error, OSError) as exc:
                raise BackendError(f"cannot open the local store {self.db_path}: {exc}") from exc
            self._initialised = True

    def _check_format(self, conn: sqlite3.Connection) -> None:
        """Stamp a new store with this version's format; refuse a store of another one.

        Only development versions of routetrace wrote other formats (none was released), so
        there is nothing to convert: the message says to move the file away.
        """
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == STORE_FORMAT:
            return
        has_traces = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'traces'").fetchone()
        if version == 0 and not has_traces:
            conn.execute(f"PRAGMA user_version = {STORE_FORMAT}")
            return
        conn.execute("ROLLBACK")
        raise BackendError(
            f"the local store {self.db_path} was written by a development version of "
            f"routetrace in store format {version}, which this version (format "
            f"{STORE_FORMAT}) cannot read: move or delete that file (and its -wal and -shm "
            "files) and routetrace creates a new store there", retryable=False,
        )

    def before_fork(self) -> None:
        self._sqlite_lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._sqlite_lock.release()

    def after_fork(self) -> None:
        # The parent's connections are abandoned, never closed: closing them here could
        # checkpoint or unlock on the parent's behalf.
        self._local = threading.local()
        self._pid = os.getpid()
        self._sqlite_lock = threading.RLock()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- experiments and runs -------------------------------------------------------------
    @_locked
    def resolve_experiment(self, experiment: Experiment, *, create: bool = True) -> ExperimentInfo:
        cached = self._experiments.get(experiment.key)
        if cached is not None:
            return cached
        conn = self._conn()
        try:
            row = self._resolve(conn, experiment, create)
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc
        info = ExperimentInfo(str(row[0]), row[1], row[2], row[3])
        self._experiments[experiment.key] = info
        return info

    def _resolve(self, conn: sqlite3.Connection, experiment: Experiment, create: bool) -> tuple:
        if experiment.experiment_id is not None:
            try:
                exp_id = int(experiment.experiment_id)
            except ValueError:
                raise BackendError(
                    f"experiment id {experiment.experiment_id!r} does not exist in {self.uri} "
                    "(local store ids are integers)", retryable=False,
                ) from None
            row = conn.execute(
                "SELECT experiment_id, name, creation_time, lifecycle_stage FROM experiments "
                "WHERE experiment_id = ?", (exp_id,),
            ).fetchone()
            if row is None:
                raise BackendError(
                    f"experiment id {experiment.experiment_id!r} does not exist in {self.uri}",
                    retryable=False,
                )
        else:
            row = self._experiment_by_name(conn, experiment.name or "")
            if row is None:
                if not create:
                    raise BackendError(
                        f"no experiment named {experiment.name!r} in {self.uri}",
                        retryable=False,
                    )
                conn.execute(
                    "INSERT OR IGNORE INTO experiments (name, creation_time) VALUES (?, ?)",
                    (experiment.name, int(time.time() * 1000)),
                )
                row = self._experiment_by_name(conn, experiment.name or "")
        return row

    @staticmethod
    def _experiment_by_name(conn: sqlite3.Connection, name: str) -> tuple | None:
        return conn.execute(
            "SELECT experiment_id, name, creation_time, lifecycle_stage FROM experiments "
            "WHERE name = ?", (name,),
        ).fetchone()

    @_locked
    def list_experiments(self) -> list[ExperimentInfo]:
        rows = self._conn().execute(
            "SELECT experiment_id, name, creation_time, lifecycle_stage FROM experiments "
            "ORDER BY experiment_id"
        ).fetchall()
        return [ExperimentInfo(str(r[0]), r[1], r[2], r[3]) for r in rows]

    @_locked
    def experiment_summaries(self) -> list[dict[str, Any]]:
        """Experiments with their trace counts, errors and last trace time (CLI, viewer)."""
        rows = self._conn().execute(
            "SELECT e.experiment_id, e.name, COUNT(t.trace_id), "
            "SUM(CASE WHEN t.state = 'ERROR' THEN 1 ELSE 0 END), MAX(t.request_time) "
            "FROM experiments e LEFT JOIN traces t ON t.experiment_id = e.experiment_id "
            "GROUP BY e.experiment_id ORDER BY e.experiment_id"
        ).fetchall()
        return [
            {
                "experiment_id": str(r[0]), "name": r[1], "traces": r[2],
                "errors": r[3] or 0, "last_request_time": r[4],
            }
            for r in rows
        ]

    @_locked
    def create_run(self, experiment: ExperimentInfo, run_name: str | None) -> str:
        import uuid

        run_id = uuid.uuid4().hex
        self._conn().execute(
            "INSERT INTO runs (run_id, experiment_id, name, start_time, status) "
            "VALUES (?, ?, ?, ?, 'RUNNING')",
            (run_id, int(experiment.experiment_id), run_name, int(time.time() * 1000)),
        )
        return run_id

    @_locked
    def end_run(self, run_id: str, status: str) -> None:
        self._conn().execute(
            "UPDATE runs SET end_time = ?, status = ? WHERE run_id = ?",
            (int(time.time() * 1000), status, run_id),
        )

    # -- writing ------------------------------------------------------------------------
    def write_records(self, experiment: ExperimentInfo,
                      records: list[TraceRecord] | list[Trace]) -> None:
        self.write_traces(experiment, records)  # records are stored as they are

    @_locked
    def write_traces(self, experiment: ExperimentInfo,  # type: ignore[override]
                     records: list[TraceRecord] | list[Trace]) -> None:
        """Store traces, either built by the export worker or read back (a spool, a push)."""
        if not records:
            return
        conn = self._conn()
        exp_id = int(experiment.experiment_id)
        try:
            by_id: dict[str, TraceRecord] = {}
            for item in records:
                record = item if item.__class__ is TraceRecord else _record_of(item)  # type: ignore[arg-type]
                tid = record.trace_id  # type: ignore[union-attr]
                if tid in by_id:
                    record = _record_of(_merge(to_trace(by_id[tid]), to_trace(record)))  # type: ignore[arg-type]
                by_id[tid] = record  # type: ignore[assignment]
            rows = _rows(exp_id, by_id.values())
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._write(conn, exp_id, by_id, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError, UnicodeError, TypeError,
                ValueError) as exc:
            # The data, not the database: retrying cannot help. Spool it for inspection.
            raise BackendError(f"local store {self.db_path}: {exc}", retryable=False) from exc
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    def _write(self, conn: sqlite3.Connection, exp_id: int, by_id: dict[str, TraceRecord],
               rows: tuple[list, list, list]) -> None:
        before = conn.total_changes
        conn.executemany(_INSERT_TRACE + " ON CONFLICT (trace_id) DO NOTHING", rows[0])
        if conn.total_changes - before < len(rows[0]):
            # Rare: some trace ids are stored already (a replay, or the other half of a
            # distributed trace). Merge those span by span and rewrite them.
            for tid in by_id:
                existing = self._load(conn, tid)
                if existing is None:
                    continue
                merged = _merge(existing, to_trace(by_id[tid]))
                if merged.data.spans != existing.data.spans or merged.info != existing.info:
                    conn.execute("DELETE FROM traces WHERE trace_id = ?", (tid,))
                    conn.executemany(_INSERT_TRACE, _rows(exp_id, [_record_of(merged)])[0])
        if rows[1]:
            conn.executemany("INSERT OR REPLACE INTO trace_tags VALUES (?, ?, ?)", rows[1])
        if rows[2]:
            conn.executemany("INSERT OR REPLACE INTO trace_metadata VALUES (?, ?, ?)", rows[2])

    # -- reading ------------------------------------------------------------------------
    def _load(self, conn: sqlite3.Connection, trace_id: str) -> Trace | None:
        row = conn.execute(
            f"SELECT {_TRACE_COLUMNS}, t.spans FROM traces t "
            "LEFT JOIN experiments e ON e.experiment_id = t.experiment_id WHERE t.trace_id = ?",
            (trace_id,),
        ).fetchone()
        if row is None:
            return None
        return self._rows_to_traces(conn, [row], include_spans=True)[0]

    @_locked
    def get_trace(self, trace_id: str) -> Trace | None:
        try:
            return self._load(self._conn(), parse_trace_id(trace_id))
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    @_locked
    def search_traces(
        self,
        *,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        run_id: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        include_spans: bool = True,
        offset: int = 0,
    ) -> list[Trace]:
        clauses = filters.parse_filter(filter_string)
        where, params = filters.to_sql(clauses)
        conditions = [where] if where else []
        if experiment_ids:
            ids = []
            for e in experiment_ids:
                ids.append(_experiment_id(e))
            conditions.append(f"t.experiment_id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if run_id:
            conditions.append("t.run_id = ?")
            params.append(run_id)
        check_max_results(max_results)
        order = filters.parse_order_by(order_by)
        sql = (
            f"SELECT {_TRACE_COLUMNS}{', t.spans' if include_spans else ''} FROM traces t "
            "LEFT JOIN experiments e ON e.experiment_id = t.experiment_id"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + f" ORDER BY {order} LIMIT ? OFFSET ?"
        )
        params.extend([max_results, max(0, int(offset))])
        conn = self._conn()
        try:
            rows = conn.execute(sql, params).fetchall()
            return self._rows_to_traces(conn, rows, include_spans=include_spans)
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    @_locked
    def count_traces(self, *, experiment_ids: list[str] | None = None,
                     filter_string: str | None = None) -> int:
        where, params = filters.to_sql(filters.parse_filter(filter_string))
        conditions = [where] if where else []
        if experiment_ids:
            conditions.append(f"t.experiment_id IN ({','.join('?' * len(experiment_ids))})")
            params.extend(_experiment_id(e) for e in experiment_ids)
        sql = "SELECT COUNT(*) FROM traces t" + (
            f" WHERE {' AND '.join(conditions)}" if conditions else ""
        )
        return int(self._conn().execute(sql, params).fetchone()[0])

    def _rows_to_traces(
        self, conn: sqlite3.Connection, rows: list[tuple], *, include_spans: bool
    ) -> list[Trace]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, dict[str, str]] = {r[0]: {NAME_TAG: r[10]} if r[10] is not None else {}
                                           for r in rows}
        meta: dict[str, dict[str, str]] = {i: {SCHEMA_KEY: SCHEMA_VERSION} for i in ids}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for tid, k, v in conn.execute(
                f"SELECT trace_id, key, value FROM trace_tags WHERE trace_id IN ({marks})", chunk
            ):
                tags[tid][k] = v
            for tid, k, v in conn.execute(
                f"SELECT trace_id, key, value FROM trace_metadata WHERE trace_id IN ({marks})",
                chunk,
            ):
                meta[tid][k] = v
        out = []
        for r in rows:
            info = TraceInfo(
                trace_id=r[0], experiment_id=str(r[1]), experiment_name=r[2],
                request_time=r[3], execution_duration=r[4], state=r[5],
                request_preview=r[6], response_preview=r[7], tags=tags[r[0]],
                trace_metadata=meta[r[0]],
            )
            # The spans are decoded only when asked for: a listing never pays for them.
            spans = [to_span(r[0], s) for s in json.loads(r[11])] if include_spans else []
            out.append(Trace(info, TraceData(spans)))
        return out

    # -- tags ---------------------------------------------------------------------------
    @_locked
    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        self._change_tag(parse_trace_id(trace_id), "INSERT OR REPLACE INTO trace_tags "
                         "VALUES (?, ?, ?)", (str(key), str(value)))

    @_locked
    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        self._change_tag(parse_trace_id(trace_id), "DELETE FROM trace_tags "
                         "WHERE trace_id = ? AND key = ?", (str(key),))

    def _change_tag(self, trace_id: str, sql: str, args: tuple[str, ...]) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM traces WHERE trace_id = ?",
                                (trace_id,)).fetchone() is None:
                    raise KeyError(f"no trace {trace_id} in {self.db_path}")
                conn.execute(sql, (trace_id, *args))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    # -- deleting -----------------------------------------------------------------------
    @_locked
    def delete_traces(
        self,
        *,
        experiment_id: str,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> int:
        check_delete_arguments(max_timestamp_millis, max_traces, trace_ids)
        exp = int(experiment_id)
        return self._delete(self._conn(), exp, max_timestamp_millis, max_traces, trace_ids)

    def _delete(self, conn: sqlite3.Connection, exp: int, max_timestamp_millis: int | None,
                max_traces: int | None, trace_ids: list[str] | None) -> int:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if trace_ids is not None:
                    ids = [parse_trace_id(t) for t in trace_ids]
                    marks = ",".join("?" * len(ids)) or "NULL"
                    victims = [
                        r[0] for r in conn.execute(
                            f"SELECT trace_id FROM traces WHERE experiment_id = ? "
                            f"AND trace_id IN ({marks})", [exp, *ids],
                        )
                    ]
                else:
                    sql = "SELECT trace_id FROM traces WHERE experiment_id = ?"
                    params: list[Any] = [exp]
                    if max_timestamp_millis is not None:
                        sql += " AND request_time <= ?"
                        params.append(int(max_timestamp_millis))
                    sql += " ORDER BY request_time ASC"
                    if max_traces is not None:
                        sql += " LIMIT ?"
                        params.append(max_traces)
                    victims = [r[0] for r in conn.execute(sql, params)]
                for start in range(0, len(victims), _CHUNK):
                    chunk = victims[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for table in ("traces", "trace_tags", "trace_metadata"):
                        conn.execute(f"DELETE FROM {table} WHERE trace_id IN ({marks})", chunk)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc
        return len(victims)

    def exists(self) -> bool:
        return self.db_path.exists()

    @_locked
    def stats(self) -> dict[str, Any]:
        conn = self._conn()
        traces = conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
        size = sum(
            p.stat().st_size for p in self.db_path.parent.glob(self.db_path.name + "*")
            if p.is_file()
        )
        return {"backend": "local", "path": str(self.db_path), "traces": traces, "bytes": size}


def _merge(old: Trace, new: Trace) -> Trace:
    """Two parts of one trace id (a continued distributed trace, or a replay): union of spans."""
    spans = {s.span_id: s for s in old.data.spans}
    for span in new.data.spans:
        spans.setdefault(span.span_id, span)
    merged_spans = sorted(spans.values(), key=lambda s: s.start_time_ns)
    start = min(s.start_time_ns for s in merged_spans)
    ends = [s.end_time_ns for s in merged_spans if s.end_time_ns is not None]
    info = TraceInfo.from_dict(old.info.to_dict())
    info.request_time = start // 1_000_000
    if ends:
        info.execution_duration = (max(ends) - start) // 1_000_000
    if "ERROR" in (str(old.info.state), str(new.info.state)):
        info.state = "ERROR"
    info.tags = {**new.info.tags, **old.info.tags}
    info.trace_metadata = {**new.info.trace_metadata, **old.info.trace_metadata}
    return Trace(info, TraceData(merged_spans))


# One shared encoder: json.dumps(**kw) builds one per call. ASCII-safe text in, as the
# worker's build cleans every string; ``default`` only for values a processor set oddly.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str,
                           check_circular=False).encode


def _rows(exp_id: int, records: Iterable[TraceRecord]) -> tuple[list, list, list]:
    """The rows of ``traces``, ``trace_tags`` and ``trace_metadata`` for ``records``: one
    JSON encode a trace (its spans)."""
    trace_rows = []
    tag_rows = []
    meta_rows = []
    for (tid, _, name, request_time, duration, state, request_preview, response_preview,
         run_id, tags, metadata, spans) in records:
        trace_rows.append((tid, exp_id, name, request_time, duration, state, request_preview,
                           response_preview, run_id, len(spans), _encode(spans)))
        if tags:
            tag_rows.extend((tid, k, v) for k, v in tags.items())
        if metadata:
            meta_rows.extend((tid, k, v) for k, v in metadata.items())
    return trace_rows, tag_rows, meta_rows


def _record_of(trace: Trace) -> TraceRecord:
    """A trace read back or replayed from a spool, as the worker would have built it."""
    info = trace.info
    tags = dict(info.tags)
    name = tags.pop(NAME_TAG, None)
    metadata = {k: v for k, v in info.trace_metadata.items()
                if not (k == SCHEMA_KEY and v == SCHEMA_VERSION)}
    spans = []
    for s in trace.data.spans:
        inputs, outputs = s.io_json()
        spans.append(SpanRecord(
            s.span_id, s.parent_id, s.name, s.span_type, s.start_time_ns, s.end_time_ns,
            str(s.status.status_code), s.status.description, inputs, outputs, s.attributes,
            [(e.name, e.timestamp, e.attributes) for e in s.events] or None,
        ))
    return TraceRecord(
        info.trace_id, info.experiment_name, name, info.request_time,  # type: ignore[arg-type]
        info.execution_duration, str(info.state), info.request_preview,  # type: ignore[arg-type]
        info.response_preview, metadata.get("mlflow.sourceRun"), tags, metadata, spans,
    )
