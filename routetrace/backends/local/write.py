"""Writing the local store: TraceRecords into rows, merging, deleting.

The export worker hands over each trace built once (a
:class:`~routetrace.core.build.TraceRecord`) and it is stored in its final form: one row of
``traces`` with the columns searches and listings read, plus a row per tag and metadata entry.
The spans are one JSON text per trace (a list of arrays, the inputs and outputs in them as JSON
values: the text they were recorded as, spliced in), encoded once on the way in. Every batch is one
``BEGIN IMMEDIATE`` transaction; trace ids are primary keys, so writing a trace twice is
harmless, and two halves of one distributed trace are merged span by span.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import chain
from typing import Any

from routetrace.backends.base import TraceSelection, records_of
from routetrace.backends.local.read import CHUNK, load
from routetrace.backends.local.schema import INSERT_TRACE, INSERT_TRACE_HEAD
from routetrace.core.build import (
    SpanRecord,
    TraceRecord,
    record_of,
    to_trace,
)
from routetrace.core.model import Trace, TraceData, TraceInfo, parse_trace_id
from routetrace.core.serialize import encoder

__all__ = ["delete", "store_records"]


def store_records(conn: sqlite3.Connection, exp_id: int,
                  records: list[TraceRecord] | list[Trace]) -> None:
    """Store traces of one experiment, built by the export worker or read back (a spool, a
    push), in one transaction."""
    by_id: dict[str, TraceRecord] = {}
    for record in records_of(records):
        tid = record.trace_id
        if tid in by_id:
            record = record_of(_merge(to_trace(by_id[tid]), to_trace(record)))
        by_id[tid] = record
    rows = _rows(exp_id, by_id.values())
    conn.execute("BEGIN IMMEDIATE")
    try:
        _write(conn, exp_id, by_id, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _write(conn: sqlite3.Connection, exp_id: int, by_id: dict[str, TraceRecord],
           rows: tuple[list, list, list]) -> None:
    before = conn.total_changes
    _insert(conn, INSERT_TRACE_HEAD, rows[0], " ON CONFLICT (trace_id) DO NOTHING")
    if conn.total_changes - before < len(rows[0]):
        # Rare: some trace ids are stored already (a replay, or the other half of a
        # distributed trace). Merge those span by span and rewrite them.
        for tid in by_id:
            existing = load(conn, tid)
            if existing is None:
                continue
            merged = _merge(existing, to_trace(by_id[tid]))
            if merged.data.spans != existing.data.spans or merged.info != existing.info:
                conn.execute("DELETE FROM traces WHERE trace_id = ?", (tid,))
                conn.executemany(INSERT_TRACE, _rows(exp_id, [record_of(merged)])[0])
    if rows[1]:
        _insert(conn, "INSERT OR REPLACE INTO trace_tags", rows[1])
    if rows[2]:
        _insert(conn, "INSERT OR REPLACE INTO trace_metadata", rows[2])


# Rows per INSERT statement: a power of two, so a batch needs at most a handful of statement
# shapes, all kept in the connection's statement cache.
_MAX_ROWS_PER_STATEMENT = 256


def _insert(conn: sqlite3.Connection, head: str, rows: list[tuple], tail: str = "") -> None:
    """Insert ``rows`` with as few statements as the parameter limit allows.

    ``executemany`` steps SQLite once per row, and each step lets go of the GIL: with the
    event loop busy, the export thread then waits for the GIL again after every row, falls
    behind and lets its queue grow. One multi-row statement steps once.
    """
    width = len(rows[0])
    limit = _rows_per_statement(conn, width)
    done, total = 0, len(rows)
    while done < total:
        size = min(limit, 1 << ((total - done).bit_length() - 1))
        conn.execute(_statement(head, width, size, tail),
                     list(chain.from_iterable(rows[done : done + size])))
        done += size


def _rows_per_statement(conn: sqlite3.Connection, width: int) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    variables = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit else 999
    rows = _MAX_ROWS_PER_STATEMENT
    while rows > 1 and rows * width > variables:
        rows //= 2
    return rows


@lru_cache(maxsize=64)
def _statement(head: str, width: int, rows: int, tail: str) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}{tail}"


def delete(connect: Callable[[], sqlite3.Connection], selection: TraceSelection) -> int:
    """Delete the selected traces with their tags and metadata; how many there were.
    ``connect`` is called once the experiment id is known to be good."""
    exp = int(selection.experiment_id)
    conn = connect()
    conn.execute("BEGIN IMMEDIATE")
    try:
        if selection.trace_ids is not None:
            ids = [parse_trace_id(t) for t in selection.trace_ids]
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
            if selection.max_timestamp_millis is not None:
                sql += " AND request_time <= ?"
                params.append(int(selection.max_timestamp_millis))
            sql += " ORDER BY request_time ASC"
            if selection.max_traces is not None:
                sql += " LIMIT ?"
                params.append(selection.max_traces)
            victims = [r[0] for r in conn.execute(sql, params)]
        for start in range(0, len(victims), CHUNK):
            chunk = victims[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for table in ("traces", "trace_tags", "trace_metadata"):
                conn.execute(f"DELETE FROM {table} WHERE trace_id IN ({marks})", chunk)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(victims)


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


# Clean text in, as the worker's build cleans every string; ``default`` only for values a
# processor set oddly.
_encode = encoder(separators=(",", ":"), default=str)


def _rows(exp_id: int, records: Iterable[TraceRecord]) -> tuple[list, list, list]:
    """The rows of ``traces``, ``trace_tags`` and ``trace_metadata`` for ``records``: one
    JSON encode a span, its inputs and outputs spliced in as the JSON text they already are."""
    trace_rows = []
    tag_rows = []
    meta_rows = []
    for (tid, _, name, request_time, duration, state, request_preview, response_preview,
         run_id, tags, metadata, spans) in records:
        trace_rows.append((tid, exp_id, name, request_time, duration, state, request_preview,
                           response_preview, run_id, len(spans), _spans_text(spans)))
        if tags:
            tag_rows.extend((tid, k, v) for k, v in tags.items())
        if metadata:
            meta_rows.extend((tid, k, v) for k, v in metadata.items())
    return trace_rows, tag_rows, meta_rows


def _spans_text(spans: list[SpanRecord]) -> str:
    """The ``spans`` column: a JSON list with one array a span, its fields in the order of
    :class:`SpanRecord` but with inputs and outputs last, as JSON values (not strings) so
    that reading a trace decodes it once. Each span's other fields are encoded and the
    inputs' and outputs' text put after them (``[...]`` becomes ``[...,inputs,outputs]``)."""
    return "[" + ",".join([
        f"{_encode(span[:8] + span[10:])[:-1]},{span[8]},{span[9]}]" for span in spans
    ]) + "]"
