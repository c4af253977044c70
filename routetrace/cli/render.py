"""Terminal output: text from traces made safe, colours, tables sized to the terminal, times and
durations, a progress bar, and one trace as a span tree drawn as a waterfall."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from routetrace.cli.common import CliError, echo, echo_error

if TYPE_CHECKING:
    from routetrace.core.model import Span, Trace


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_SPACES = re.compile(r"[\t\n\r]+")


def safe(text: Any, *, one_line: bool = True) -> str:
    """Text from a trace, made harmless for a terminal (no escape sequences, one line)."""
    s = str(text)
    if one_line:
        s = _SPACES.sub(" ", s)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def raise_failures(failed: Sequence[Any], label: str, summary: str) -> None:
    """Name the first few failures on stderr, then fail the command with ``summary``: a
    batch command reports what it could not do, after what it did."""
    if not failed:
        return
    for failure in failed[:5]:
        echo_error(f"{label}: {safe(failure)}")
    raise CliError(summary)


def json_text(value: Any) -> str:
    """JSON for machines; C1 control characters escaped (valid JSON, safe to cat)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def terminal_width() -> int:
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _color(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint_state(text: str, state: str) -> str:
    if not _color():
        return text
    code = {"ERROR": "31", "OK": "32", "IN_PROGRESS": "33"}.get(state)
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


def _unicode_ok(stream: TextIO = sys.stdout) -> bool:
    try:
        "█├└│…".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def tabulate(headers: Sequence[str], rows: list[list[str]], *, flex: Sequence[int] = (),
             right: Sequence[int] = (), width: int | None = None,
             paint: Callable[[int, str, str], str] | None = None,
             shrink_first: Sequence[int] = ()) -> list[str]:
    """Columns sized to their content; ``flex`` columns shrink to fit the terminal.

    ``shrink_first`` columns (flex ones) give up their width before the others share theirs:
    a request preview can be cut to a few characters before a trace's name loses any.
    """
    width = width or terminal_width()
    n = len(headers)
    natural = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(n)]
    sizes = list(natural)
    over = sum(sizes) + 2 * (n - 1) - width
    for i in shrink_first:
        cut = min(over, sizes[i] - max(8, len(headers[i])))
        if cut > 0:
            sizes[i] -= cut
            over -= cut
    rest = [i for i in flex if i not in shrink_first]
    if over > 0 and rest:
        # Water-filling: narrow flex columns keep their width, wide ones share what is left.
        fixed = sum(sizes[i] for i in range(n) if i not in rest) + 2 * (n - 1)
        room = max(len(rest) * 8, width - fixed)
        pending = sorted(rest, key=lambda i: natural[i])
        while pending:
            share = room // len(pending)
            i = pending.pop(0)
            sizes[i] = max(8, len(headers[i]), min(natural[i], share))
            room -= sizes[i]
    out = []
    for row_index, row in enumerate([list(headers), *rows]):
        cells = []
        for i in range(n):
            cell = _cut(row[i], sizes[i])
            cell = cell.rjust(sizes[i]) if i in right else cell.ljust(sizes[i])
            if paint is not None and row_index > 0:
                cell = paint(i, cell, row[i])
            cells.append(cell)
        out.append("  ".join(cells).rstrip())
    return out


class Progress:
    """A one-line progress bar on stderr, drawn only on a terminal (no tqdm dependency)."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._drawn = False
        self._last = 0.0

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        cells = max(10, min(40, terminal_width() - len(self.label) - 30))
        if self.total:
            frac = min(1.0, done / self.total)
            fill = int(frac * cells)
            bar = "#" * fill + "-" * (cells - fill)
            text = f"\r{self.label} [{bar}] {done}/{self.total}"
        else:
            text = f"\r{self.label} {done}"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self, done: int | None = None) -> None:
        if done is not None:
            self.update(done, force=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_time(ms: int | None, *, short: bool = False) -> str:
    if ms is None:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000).strftime(
        "%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")


def format_duration_ms(ms: int | None) -> str:
    from routetrace.core.display import format_duration_ns

    return format_duration_ns(None if ms is None else ms * 1_000_000)


def _tree(spans: list[Span]) -> list[tuple[Span, str]]:
    """Spans in display order with their tree prefix (``├─``, ``└─``)."""
    from routetrace.core.display import ordered_spans

    uni = _unicode_ok()
    tee, elbow, pipe = ("├─ ", "└─ ", "│  ") if uni else ("|- ", "`- ", "|  ")
    ordered = ordered_spans(spans)
    ids = {s.span_id for s, _ in ordered}
    children: dict[str | None, list[Span]] = {}
    for span, _ in ordered:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    out: list[tuple[Span, str]] = []

    def walk(parent: str | None, prefix: str, seen: set[str]) -> None:
        kids = children.get(parent, [])
        for i, span in enumerate(kids):
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            last = i == len(kids) - 1
            lead = "" if parent is None else prefix + (elbow if last else tee)
            out.append((span, lead))
            walk(span.span_id, "" if parent is None else prefix + ("   " if last else pipe),
                 seen)

    walk(None, "", set())
    return out


def _print_value(title: str, value: Any, indent: str, full: bool, width: int) -> None:
    if value in (None, {}, []):
        return
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=2 if full else None, ensure_ascii=False, default=str)
    if not full:
        echo(f"{indent}{title}: {_cut(safe(text), width - len(indent) - len(title) - 2)}")
        return
    echo(f"{indent}{title}:")
    for line in text.splitlines() or [""]:
        echo(f"{indent}  {safe(line)}")


def render_trace(trace: Trace, *, full: bool = False, width: int | None = None) -> None:
    """The trace's header, its span tree as a waterfall, then previews, tags and metadata."""
    from routetrace.core.display import format_duration_ns, waterfall

    width = width or terminal_width()
    info = trace.info
    echo(f"{safe(info.name or 'trace')}  {paint_state(str(info.state), str(info.state))}  "
         f"{format_duration_ms(info.execution_duration)}  {format_time(info.request_time)}")
    echo(f"{info.trace_id}  experiment {safe(info.experiment_name or info.experiment_id)}")
    rows, total = waterfall(trace)
    if not rows:
        echo("(no spans)")
    else:
        placed = {r.span.span_id: r for r in rows}
        tree = _tree(trace.data.spans)
        labels = [lead + safe(span.name) for span, lead in tree]
        types = [safe(span.span_type) for span, _ in tree]
        type_w = max(len(t) for t in types)
        dur_w = 9
        name_w = min(max(len(label) for label in labels), max(16, width * 2 // 5))
        marker = 7 if any(str(s.status.status_code) == "ERROR" for s, _ in tree) else 0
        bar_w = max(10, width - name_w - type_w - dur_w - 6 - 2 - marker)
        block = "█" if _unicode_ok() else "#"
        axis = format_duration_ns(total)
        echo("")
        echo(f"{'span'.ljust(name_w)}  {'type'.ljust(type_w)}  {'duration'.rjust(dur_w)}  "
             f"|0{axis.rjust(bar_w - 1)}|")
        for (span, _), label, stype in zip(tree, labels, types, strict=True):
            row = placed[span.span_id]
            start = min(bar_w - 1, int(row.start * bar_w))
            end = min(bar_w, max(start + 1, round(row.end * bar_w)))
            bar = " " * start + block * (end - start) + " " * (bar_w - end)
            error = str(span.status.status_code) == "ERROR"
            if error:
                bar = paint_state(bar, "ERROR")
            dur = format_duration_ns(row.duration_ns)
            echo(f"{_cut(label, name_w).ljust(name_w)}  {stype.ljust(type_w)}  "
                 f"{dur.rjust(dur_w)}  |{bar}|" + ("  " + paint_state("ERROR", "ERROR") if error
                                                   else ""))
        for span, _ in tree:
            if not full and str(span.status.status_code) != "ERROR":
                continue
            echo("")
            head = (f"— {safe(span.name)} ({safe(span.span_type)}, "
                    f"{format_duration_ns(span.duration_ns)}, {span.status.status_code}"
                    + (f": {safe(span.status.description)}" if span.status.description
                       else "") + ")")
            echo(head if full else _cut(head, width))
            if full:
                _print_value("inputs", span.inputs, "  ", True, width)
                _print_value("outputs", span.outputs, "  ", True, width)
                _print_value("attributes", span.attributes, "  ", True, width)
            if full:
                _print_value("events", [e.to_dict() for e in span.events], "  ", True, width)
                continue
            for event in span.events:
                a = event.attributes
                what = ": ".join(str(a[k]) for k in ("exception.type", "exception.message")
                                 if a.get(k)) or ", ".join(f"{k}={v}" for k, v in a.items())
                echo(_cut(f"  event {safe(event.name)}" + (f": {safe(what)}" if what else ""),
                          width))
    echo("")
    _print_value("request", info.request_preview, "", full, width)
    _print_value("response", info.response_preview, "", full, width)
    _print_value("tags", info.tags, "", full, width)
    _print_value("metadata", info.trace_metadata, "", full, width)
    if not full:
        echo("(--full for every span's inputs, outputs and attributes; --json for all of it)")

