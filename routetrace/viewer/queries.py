"""Turn the viewer's filter form into backend searches.

Filters are written in MLflow's filter syntax and handed to ``Backend.search_traces``, which
parses them into bound parameters: user text is only ever a quoted string literal here, with its
quotes and backslashes escaped, never SQL. That also makes the same code work over an MLflow
server. Free text looks at both previews; the syntax has no ``OR``, so that is two searches
merged in the backend's own order (newest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routetrace.backends.base import Backend
from routetrace.core.model import Trace

__all__ = ["PREVIEW_CHARS", "TraceQuery", "quote", "search_page", "summary_row"]

#: Characters of a preview sent to the trace table; the trace page shows all of it.
PREVIEW_CHARS = 240
STATUSES = ("OK", "ERROR", "IN_PROGRESS")


def quote(text: str) -> str:
    """``text`` as a single-quoted string literal of the filter syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class TraceQuery:
    """What the trace table asks for. Every field is optional."""

    experiment_ids: tuple[str, ...] = ()
    status: str | None = None
    name: str | None = None  # substring of the trace name ("POST /math/{op}"), any case
    text: str | None = None  # substring of the request or response preview, any case
    since_ms: int | None = None
    until_ms: int | None = None
    extra_filter: str | None = None  # a raw MLflow filter, ANDed with the rest

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")

    def filter_string(self) -> str:
        parts = []
        if self.status:
            parts.append(f"trace.status = {quote(self.status)}")
        if self.name:
            parts.append(f"trace.name ILIKE {quote('%' + self.name + '%')}")
        if self.since_ms is not None:
            parts.append(f"trace.timestamp_ms >= {int(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"trace.timestamp_ms <= {int(self.until_ms)}")
        if self.extra_filter and self.extra_filter.strip():
            parts.append(self.extra_filter.strip())
        return " AND ".join(parts)


def _search(backend: Backend, query: TraceQuery, filter_string: str, limit: int,
            offset: int) -> list[Trace]:
    return backend.search_traces(
        experiment_ids=list(query.experiment_ids) or None,
        filter_string=filter_string or None,
        max_results=limit,
        offset=offset,
        include_spans=False,
    )


def search_page(backend: Backend, query: TraceQuery, page: int, page_size: int
                ) -> tuple[list[Trace], bool, int | None]:
    """One page of traces (1-based), whether there is a next page, and the total if cheap."""
    offset = (page - 1) * page_size
    base = query.filter_string()
    if not query.text:
        traces = _search(backend, query, base, page_size + 1, offset)
        total = None
        count = getattr(backend, "count_traces", None)
        if count is not None:
            total = count(experiment_ids=list(query.experiment_ids) or None,
                          filter_string=base or None)
        return traces[:page_size], len(traces) > page_size, total
    needle = quote("%" + query.text + "%")
    merged: dict[str, Trace] = {}
    for field in ("request_preview", "response_preview"):
        clause = f"trace.{field} ILIKE {needle}"
        text_filter = f"{base} AND {clause}" if base else clause
        for trace in _search(backend, query, text_filter, offset + page_size + 1, 0):
            merged.setdefault(trace.info.trace_id, trace)
    ordered = sorted(merged.values(), key=lambda t: (t.info.request_time, t.info.trace_id),
                     reverse=True)
    return ordered[offset : offset + page_size], len(ordered) > offset + page_size, None


def _cut(text: str | None, limit: int = PREVIEW_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def summary_row(trace: Trace) -> dict[str, Any]:
    """A trace as one row of the table: previews cut short (huge bodies stay server-side)."""
    info = trace.info
    return {
        "trace_id": info.trace_id,
        "experiment_id": info.experiment_id,
        "experiment_name": info.experiment_name,
        "name": info.name,
        "state": str(info.state),
        "request_time": info.request_time,
        "execution_duration": info.execution_duration,
        "request_preview": _cut(info.request_preview),
        "response_preview": _cut(info.response_preview),
    }
