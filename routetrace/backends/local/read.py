"""Reading the local store: one trace, a search, a count.

Reading shows what was stored; it never builds anything. The spans (one JSON text per trace,
inputs and outputs in it as JSON values) are decoded once, and only when asked for, so a
listing never pays for them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from routetrace.backends import filters
from routetrace.backends.base import TraceQuery
from routetrace.backends.local.schema import TRACE_COLUMNS
from routetrace.core.build import NAME_TAG, SCHEMA_KEY, SCHEMA_VERSION
from routetrace.core.model import Span, SpanEvent, SpanStatus, Trace, TraceData, TraceInfo

__all__ = ["CHUNK", "count", "experiment_id_of", "load", "search"]

# Trace ids bound in one ``IN (...)``: well under SQLite's limit of bound parameters.
CHUNK = 500


def experiment_id_of(value: object) -> int:
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


def load(conn: sqlite3.Connection, trace_id: str) -> Trace | None:
    row = conn.execute(
        f"SELECT {TRACE_COLUMNS}, t.spans FROM traces t "
        "LEFT JOIN experiments e ON e.experiment_id = t.experiment_id WHERE t.trace_id = ?",
        (trace_id,),
    ).fetchone()
    if row is None:
        return None
    return _rows_to_traces(conn, [row], include_spans=True)[0]


def search(connect: Callable[[], sqlite3.Connection], query: TraceQuery) -> list[Trace]:
    """The traces ``query`` asks for: its filter is parsed, never interpolated into SQL.

    ``connect`` is called once the query is known to be good, so a bad filter never opens
    (or creates) the store.
    """
    clauses = filters.parse_filter(query.filter_string)
    where, params = filters.to_sql(clauses)
    conditions = [where] if where else []
    if query.experiment_ids:
        ids = []
        for e in query.experiment_ids:
            ids.append(experiment_id_of(e))
        conditions.append(f"t.experiment_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if query.run_id:
        conditions.append("t.run_id = ?")
        params.append(query.run_id)
    order = filters.parse_order_by(query.order_by)
    sql = (
        f"SELECT {TRACE_COLUMNS}{', t.spans' if query.include_spans else ''} FROM traces t "
        "LEFT JOIN experiments e ON e.experiment_id = t.experiment_id"
        + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        + f" ORDER BY {order} LIMIT ? OFFSET ?"
    )
    params.extend([query.max_results, max(0, int(query.offset))])
    conn = connect()
    rows = conn.execute(sql, params).fetchall()
    return _rows_to_traces(conn, rows, include_spans=query.include_spans)


def count(connect: Callable[[], sqlite3.Connection], experiment_ids: list[str] | None,
          filter_string: str | None) -> int:
    where, params = filters.to_sql(filters.parse_filter(filter_string))
    conditions = [where] if where else []
    if experiment_ids:
        conditions.append(f"t.experiment_id IN ({','.join('?' * len(experiment_ids))})")
        params.extend(experiment_id_of(e) for e in experiment_ids)
    sql = "SELECT COUNT(*) FROM traces t" + (
        f" WHERE {' AND '.join(conditions)}" if conditions else ""
    )
    return int(connect().execute(sql, params).fetchone()[0])


def _rows_to_traces(
    conn: sqlite3.Connection, rows: list[tuple], *, include_spans: bool
) -> list[Trace]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    tags: dict[str, dict[str, str]] = {r[0]: {NAME_TAG: r[10]} if r[10] is not None else {}
                                       for r in rows}
    meta: dict[str, dict[str, str]] = {i: {SCHEMA_KEY: SCHEMA_VERSION} for i in ids}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
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
        spans = [_span(r[0], s) for s in json.loads(r[11])] if include_spans else []
        out.append(Trace(info, TraceData(spans)))
    return out


def _span(trace_id: str, stored: list) -> Span:
    """A span from its array in the ``spans`` column (see ``write._spans_text``)."""
    (span_id, parent_id, name, span_type, start, end, code, description, attributes, events,
     inputs, outputs) = stored
    return Span(
        trace_id=trace_id, span_id=span_id, parent_id=parent_id, name=name,
        span_type=span_type, start_time_ns=start, end_time_ns=end,
        status=SpanStatus(code, description), inputs=inputs, outputs=outputs,
        attributes=attributes,
        events=[SpanEvent(n, ts, a) for n, ts, a in events] if events else [],
    )
