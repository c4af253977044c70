"""Notebook display: a ``Trace`` renders as a span waterfall, search results as a table.

Plain HTML with inline styles: no scripts, no CDN, so it works offline, in static exports and in
notebook viewers that strip JavaScript. The layout (rows nested by parent, bars on a shared time
axis, the same colours per span type) is the web viewer's, so a trace looks the same in both.
Every string from a trace is HTML-escaped: inputs and previews are request data, i.e. untrusted.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from routetrace.core.model import Span, Trace, set_html_renderer

__all__ = [
    "TraceList",
    "WaterfallRow",
    "disable_notebook_display",
    "enable_notebook_display",
    "format_duration_ns",
    "ordered_spans",
    "span_color",
    "trace_html",
    "waterfall",
]

_enabled = True

#: Bar colours per span type; the viewer's app.js keeps the same table.
SPAN_COLORS = {
    "LLM": "#8b5cf6",
    "CHAT_MODEL": "#8b5cf6",
    "TOOL": "#f59e0b",
    "RETRIEVER": "#10b981",
    "EMBEDDING": "#10b981",
    "RERANKER": "#10b981",
    "AGENT": "#0ea5e9",
    "CHAIN": "#0ea5e9",
    "WORKFLOW": "#0ea5e9",
    "TASK": "#0ea5e9",
}
DEFAULT_COLOR = "#3b82f6"
ERROR_COLOR = "#dc2626"
#: Characters of one value shown in a notebook cell before it is cut (the trace keeps it all).
DETAIL_MAX_CHARS = 20_000


def enable_notebook_display() -> None:
    """Render traces and search results as HTML in Jupyter (the default), as MLflow does."""
    global _enabled
    _enabled = True


def disable_notebook_display() -> None:
    """Show traces in notebooks as their plain ``repr`` instead of HTML."""
    global _enabled
    _enabled = False


def is_enabled() -> bool:
    return _enabled


def format_duration_ns(ns: int | None) -> str:
    """``12.3 ms`` / ``1.25 s``: one format for the CLI, the notebook and the viewer."""
    if ns is None:
        return "–"
    ms = ns / 1e6
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


_ms = format_duration_ns


def span_color(span: Span) -> str:
    if str(span.status.status_code) == "ERROR":
        return ERROR_COLOR
    return SPAN_COLORS.get(str(span.span_type), DEFAULT_COLOR)


def ordered_spans(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans depth-first (children after their parent, by start time) with their depth.

    A span whose parent is not in the trace (a continued distributed trace) is a root.
    """
    by_parent: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        by_parent.setdefault(parent, []).append(s)
    for children in by_parent.values():
        children.sort(key=lambda s: s.start_time_ns)
    out: list[tuple[Span, int]] = []
    stack = [(s, 0) for s in reversed(by_parent.get(None, []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:  # a malformed trace with a parent cycle
            continue
        seen.add(span.span_id)
        out.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(by_parent.get(span.span_id, [])))
    return out


@dataclass(frozen=True)
class WaterfallRow:
    """One span placed on the trace's time axis (fractions of the trace's duration)."""

    span: Span
    depth: int
    start: float  # 0..1
    end: float  # 0..1
    duration_ns: int | None


def waterfall(trace: Trace) -> tuple[list[WaterfallRow], int]:
    """Rows in display order and the trace's total span in nanoseconds."""
    spans = ordered_spans(trace.data.spans)
    if not spans:
        return [], 0
    t0 = min(s.start_time_ns for s, _ in spans)
    t1 = max((s.end_time_ns or s.start_time_ns) for s, _ in spans)
    total = max(1, t1 - t0)
    rows = []
    for span, depth in spans:
        end = span.end_time_ns if span.end_time_ns is not None else t1
        rows.append(
            WaterfallRow(span, depth, (span.start_time_ns - t0) / total, (end - t0) / total,
                         span.duration_ns)
        )
    return rows, total


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > DETAIL_MAX_CHARS:
        cut = len(text) - DETAIL_MAX_CHARS
        text = text[:DETAIL_MAX_CHARS] + f"\n… ({cut} more characters; trace.to_json() has all)"
    return text


_PRE = ("margin:2px 0 6px;padding:6px;background:#f8fafc;border:1px solid #e2e8f0;"
        "border-radius:4px;max-height:300px;overflow:auto;white-space:pre-wrap;"
        "word-break:break-word;font-size:12px")


def _section(title: str, value: Any) -> str:
    if value in (None, {}, []):
        return ""
    return f"<div style='color:#475569;font-weight:600'>{_e(title)}</div><pre style='{_PRE}'>" \
        f"{_e(_pretty(value))}</pre>"


def _axis(total_ns: int) -> str:
    ticks = []
    for i in range(5):
        frac = i / 4
        align = "translateX(-100%)" if i == 4 else ("none" if i == 0 else "translateX(-50%)")
        ticks.append(
            f"<span style='position:absolute;left:{frac * 100:.0f}%;transform:{align};"
            f"color:#64748b;font-size:11px'>{_e(format_duration_ns(int(total_ns * frac)))}</span>"
        )
    return f"<div style='position:relative;height:14px'>{''.join(ticks)}</div>"


def trace_html(trace: Trace) -> str:
    """The trace as a self-contained HTML fragment: header, waterfall, span details."""
    info = trace.info
    rows, total = waterfall(trace)
    state = str(info.state)
    badge = ERROR_COLOR if state == "ERROR" else ("#16a34a" if state == "OK" else "#64748b")
    head = (
        f"<div style='margin-bottom:6px'><b>{_e(info.name or 'trace')}</b> "
        f"<span style='background:{badge};color:#fff;border-radius:3px;padding:0 5px'>"
        f"{_e(state)}</span> · {_e(format_duration_ns((info.execution_duration or 0) * 10**6))}"
        f" · experiment {_e(info.experiment_name or info.experiment_id)}"
        f" · <code>{_e(info.trace_id)}</code></div>"
    )
    if not rows:
        return f"<div style='font-family:system-ui,sans-serif;font-size:13px'>{head}" \
            "<i>no spans</i></div>"
    body = [
        "<tr><td></td><td style='padding:0 8px'>" + _axis(total) + "</td><td></td></tr>"
    ]
    for row in rows:
        span = row.span
        width = max(0.3, (row.end - row.start) * 100)
        left = min(row.start * 100, 100 - width)
        dur = format_duration_ns(row.duration_ns)
        body.append(
            "<tr style='border-top:1px solid #f1f5f9'>"
            f"<td style='padding:2px 8px 2px {6 + row.depth * 16}px;white-space:nowrap;"
            f"max-width:320px;overflow:hidden;text-overflow:ellipsis'>{_e(span.name)} "
            f"<small style='color:#64748b'>{_e(span.span_type)}</small></td>"
            "<td style='width:60%;padding:2px 8px'><div style='position:relative;height:12px;"
            "background:#f1f5f9;border-radius:2px'>"
            f"<div title='{_e(span.name)}: {_e(dur)}' style='position:absolute;left:{left:.2f}%;"
            f"width:{width:.2f}%;height:12px;background:{span_color(span)};border-radius:2px'>"
            "</div></div></td>"
            f"<td style='padding:2px 8px;text-align:right;white-space:nowrap'>{_e(dur)}</td></tr>"
        )
    details = []
    for row in rows:
        span = row.span
        status = span.status
        status_text = str(status.status_code) + (f": {status.description}"
                                                 if status.description else "")
        events = [e.to_dict() for e in span.events]
        details.append(
            "<details style='margin:2px 0 2px " f"{row.depth * 16}px'>"
            f"<summary>{_e(span.name)} <small style='color:#64748b'>{_e(span.span_type)} · "
            f"{_e(format_duration_ns(row.duration_ns))} · {_e(status_text)}</small></summary>"
            + _section("Inputs", span.inputs) + _section("Outputs", span.outputs)
            + _section("Attributes", span.attributes) + _section("Events", events)
            + "</details>"
        )
    trace_details = (
        _section("Request preview", info.request_preview)
        + _section("Response preview", info.response_preview)
        + _section("Tags", info.tags) + _section("Metadata", info.trace_metadata)
    )
    return (
        "<div style='font-family:system-ui,sans-serif;font-size:13px'>" + head
        + "<table style='border-collapse:collapse;width:100%'>" + "".join(body) + "</table>"
        + "<details style='margin-top:6px'><summary>Spans</summary>" + "".join(details)
        + "</details>"
        + (f"<details><summary>Trace info</summary>{trace_details}</details>"
           if trace_details else "")
        + "</div>"
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
            preview = i.request_preview or ""
            cells: list[Any] = [
                when, i.trace_id, i.experiment_name or i.experiment_id, i.name or "",
                i.state, format_duration_ns(None if i.execution_duration is None
                                            else i.execution_duration * 1_000_000),
                preview[:120] + ("…" if len(preview) > 120 else ""),
            ]
            body.append("<tr style='border-top:1px solid #f1f5f9'>" + "".join(
                f"<td style='padding:2px 8px'>{_e(c)}</td>" for c in cells
            ) + "</tr>")
        if not body:
            return "<div style='font-family:system-ui,sans-serif;font-size:13px'>" \
                "<i>no traces</i></div>"
        return (
            "<table style='font-family:system-ui,sans-serif;font-size:13px;"
            f"border-collapse:collapse'><tr>{head}</tr>{''.join(body)}</table>"
        )


def _notebook_html(trace: Trace) -> str | None:
    return trace_html(trace) if _enabled else None


set_html_renderer(_notebook_html)
