"""The :class:`LocalStore`: its connections, its lock, experiments and runs.

Nothing to start. Several processes (gunicorn workers) may write at once: every write is one
``BEGIN IMMEDIATE`` transaction per batch, and SQLite's busy timeout serialises them. What the
tables hold is in :mod:`.schema`, how traces become rows in :mod:`.write`, how they are read
back in :mod:`.read`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from routetrace.backends.base import (
    Backend,
    BackendError,
    ExperimentInfo,
    TraceQuery,
    TraceSelection,
)
from routetrace.backends.local import read, schema, write
from routetrace.backends.local.schema import DB_FILENAME
from routetrace.core.build import TraceRecord
from routetrace.core.destination import Experiment
from routetrace.core.model import Trace, parse_trace_id

__all__ = ["LocalStore"]

log = logging.getLogger("routetrace")

_BUSY_TIMEOUT_MS = 30_000


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
                try:
                    schema.create_tables(conn, self.db_path)
                except BackendError:
                    conn.close()
                    raise
                conn.close()
            except (sqlite3.Error, OSError) as exc:
                raise BackendError(f"cannot open the local store {self.db_path}: {exc}") from exc
            self._initialised = True

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
            write.store_records(conn, exp_id, records)
        except (sqlite3.InterfaceError, sqlite3.ProgrammingError, UnicodeError, TypeError,
                ValueError) as exc:
            # The data, not the database: retrying cannot help. Spool it for inspection.
            raise BackendError(f"local store {self.db_path}: {exc}", retryable=False) from exc
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    # -- reading ------------------------------------------------------------------------
    @_locked
    def get_trace(self, trace_id: str) -> Trace | None:
        try:
            return read.load(self._conn(), parse_trace_id(trace_id))
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    @_locked
    def _search_traces(self, query: TraceQuery) -> list[Trace]:
        try:
            return read.search(self._conn, query)
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

    @_locked
    def count_traces(self, *, experiment_ids: list[str] | None = None,
                     filter_string: str | None = None) -> int:
        return read.count(self._conn, experiment_ids, filter_string)

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
    def _delete_traces(self, selection: TraceSelection) -> int:
        try:
            return write.delete(self._conn, selection)
        except sqlite3.Error as exc:
            raise BackendError(f"local store {self.db_path}: {exc}") from exc

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

