"""The local store's tables and its format stamp.

``PRAGMA user_version`` records the layout of the ``spans`` column. Only development versions
of routetrace wrote other formats (none was released), so there is nothing to convert: a store
of another format is refused with a message that says to move the file away.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from routetrace.backends.base import BackendError

__all__ = ["DB_FILENAME", "INSERT_TRACE", "INSERT_TRACE_HEAD", "STORE_FORMAT", "TRACE_COLUMNS",
           "create_tables"]

DB_FILENAME = "routetrace.sqlite"
# PRAGMA user_version of a store this version writes: the layout of the ``spans`` column.
STORE_FORMAT = 2

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

INSERT_TRACE_HEAD = (
    "INSERT INTO traces (trace_id, experiment_id, name, request_time, execution_duration, "
    "state, request_preview, response_preview, run_id, span_count, spans)"
)
INSERT_TRACE = INSERT_TRACE_HEAD + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
TRACE_COLUMNS = (
    "t.trace_id, t.experiment_id, e.name, t.request_time, t.execution_duration, t.state, "
    "t.request_preview, t.response_preview, t.run_id, t.span_count, t.name"
)


def create_tables(conn: sqlite3.Connection, db_path: Path) -> None:
    """Switch the file to WAL, check its format and create what is missing, in one
    transaction; another process doing the same at the same moment is waited for."""
    for attempt in range(50):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            _check_format(conn, db_path)
            conn.executescript(_SCHEMA.replace("\n;", ";"))  # commits
            break
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05)


def _check_format(conn: sqlite3.Connection, db_path: Path) -> None:
    """Stamp a new store with this version's format; refuse a store of another one."""
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
        f"the local store {db_path} was written by a development version of "
        f"routetrace in store format {version}, which this version (format "
        f"{STORE_FORMAT}) cannot read: move or delete that file (and its -wal and -shm "
        "files) and routetrace creates a new store there", retryable=False,
    )
