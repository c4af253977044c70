"""Notebook display: a ``Trace`` renders as a span waterfall, search results as a table.

Plain HTML with inline styles: no scripts, no CDN, works offline and in static exports.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routetrace.tracing.model import Span, Trace

__all__ = ["TraceList", "disable_notebook_display", "enable_notebook_display", "trace_html"]

_enabled = True


def enable_notebook_display() -> None:
    global _enabled
    _enabled = True


def disable_notebook_display() -> None:
    global _enabled
    _enabled = False


def is_enabled() -> bool:
    return _enabled


def _ms(ns: int | None) -> str:
    if ns is None:
        return "–"
    ms = ns / 1e6
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def ordered_spans(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans depth-first (children after their parent, by start time) with their depth."""
    by_parent: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        by_parent.setdefault(parent, []).append(s)
    for children in by_parent.values():
        children.sort(key=lambda s: s.start_time_ns)
    out: list[tuple[Span, int]] = []
    stack = [(s, 0) for s in reversed(by_parent.get(None, []))]
    while stack:
        span, depth = stack.pop()
        out.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(by_parent.get(span.span_id, [])))
    return out


def trace_html(trace: Trace) -> str:
    spans = ordered_spans(trace.data.spans)
    if not spans:
        return f"<div>Trace {html.escape(trace.info.trace_id)} (no spans)</div>"
    t0 = min(s.start_time_ns for s, _ in spans)
    t1 = max((s.end_time_ns or s.start_time_ns) for s, _ in spans)
    total = max(1, t1 - t0)
    rows = []
    for span, depth in spans:
        left = (span.start_time_ns - t0) / total * 100
        width = max(0.4, ((span.end_time_ns or t1) - span.start_time_ns) / total * 100)
        error = str(span.status.status_code) == "ERROR"
        color = "#d9534f" if error else "#3b82f6"
        rows.append(
            "<tr>"
            f"<td style='padding:2px 8px 2px {8 + depth * 14}px;white-space:nowrap'>"
            f"{html.escape(span.name)} <small style='color:#888'>{html.escape(span.span_type)}"
            "</small></td>"
            f"<td style='width:60%'><div style='position:relative;height:12px;background:#f3f4f6'>"
            f"<div title='{_ms(span.duration_ns)}' style='position:absolute;left:{left:.2f}%;"
            f"width:{width:.2f}%;height:12px;background:{color};border-radius:2px'></div></div></td>"
            f"<td style='padding:2px 8px;text-align:right;white-space:nowrap'>"
            f"{_ms(span.duration_ns)}</td></tr>"
        )
    info = trace.info
    return (
        "<div style='font-family:system-ui,sans-serif;font-size:13px'>"
        f"<div><b>{html.escape(info.name or '')}</b> · {html.escape(info.trace_id)} · "
        f"{html.escape(str(info.state))} · {_ms((info.execution_duration or 0) * 1_000_000)}"
        f" · experiment {html.escape(info.experiment_name or info.experiment_id)}</div>"
        "<table style='border-collapse:collapse;width:100%'>" + "".join(rows) + "</table></div>"
    )


class TraceList(list):
    """The list ``search_traces`` returns; renders as a table in a notebook."""

    def _repr_html_(self) -> str | None:
        if not _enabled:
            return None
        import datetime as dt

        head = "".join(
            f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
            for h in ("time", "trace id", "experiment", "name", "state", "duration", "request")
        )
        body = []
        for t in self:
            i = t.info
            when = dt.datetime.fromtimestamp(i.request_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
            cells: list[Any] = [
                when, i.trace_id, i.experiment_name or i.experiment_id, i.name or "",
                i.state, _ms((i.execution_duration or 0) * 1_000_000),
                (i.request_preview or "")[:80],
            ]
            body.append("<tr>" + "".join(
                f"<td style='padding:2px 8px'>{html.escape(str(c))}</td>" for c in cells
            ) + "</tr>")
        return (
            "<table style='font-family:system-ui,sans-serif;font-size:13px'>"
            f"<tr>{head}</tr>{''.join(body)}</table>"
        )
