"""The ``routetrace`` command: look at, clean up and move traces without an MLflow server.

Every command reads the same settings as the library (``MLFLOW_TRACKING_URI`` and friends;
``--tracking-uri`` wins). argparse only, so the core install stays light: the viewer's
Starlette/uvicorn and the demo's httpx are imported by the commands that need them.

Errors are one line on stderr and exit status 2 (usage: a bad option, variable or answer) or 1
(the work failed: a bad filter, an unknown trace, a backend error); ``--debug`` shows the
traceback instead. Text from traces is request data: control characters are escaped before
they reach the terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from routetrace.backends.base import Backend, ExperimentInfo
    from routetrace.tracing.model import Span, Trace

__all__ = ["CliError", "main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "routetrace"


class CliError(Exception):
    """Reported as one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise CliError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)


# -- terminal helpers -------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[\t\n\r]+")


def _safe(text: Any, *, one_line: bool = True) -> str:
    """Text from a trace, made harmless for a terminal (no escape sequences, one line)."""
    s = str(text)
    if one_line:
        s = _SPACES.sub(" ", s)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def _json_text(value: Any) -> str:
    """JSON for machines; C1 control characters escaped (valid JSON, safe to cat)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _width() -> int:
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _color(stream: TextIO = sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _paint(text: str, state: str) -> str:
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


def _table(headers: Sequence[str], rows: list[list[str]], *, flex: Sequence[int] = (),
           right: Sequence[int] = (), width: int | None = None,
           paint: Callable[[int, str, str], str] | None = None) -> list[str]:
    """Columns sized to their content; ``flex`` columns shrink to fit the terminal."""
    width = width or _width()
    n = len(headers)
    natural = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(n)]
    sizes = list(natural)
    over = sum(sizes) + 2 * (n - 1) - width
    if over > 0 and flex:
        # Water-filling: narrow flex columns keep their width, wide ones share what is left.
        fixed = sum(sizes[i] for i in range(n) if i not in flex) + 2 * (n - 1)
        room = max(len(flex) * 8, width - fixed)
        pending = sorted(flex, key=lambda i: natural[i])
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
        cells = max(10, min(40, _width() - len(self.label) - 30))
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


def _when(ms: int | None, *, short: bool = False) -> str:
    if ms is None:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000).strftime(
        "%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")


def _duration_ms(ms: int | None) -> str:
    from routetrace.tracing.display import format_duration_ns

    return format_duration_ns(None if ms is None else ms * 1_000_000)


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` as seconds."""
    m = _AGE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use a number and a unit, e.g. 90s, 15m, 12h, 7d, 2w"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


def _since_ms(text: str) -> int:
    """``--since``: an age (``7d``), epoch milliseconds, or an ISO date/time."""
    if text.strip().isdigit():
        return int(text.strip())
    try:
        return int((time.time() - parse_age(text)) * 1000)
    except argparse.ArgumentTypeError:
        pass
    try:
        return int(dt.datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --since {text!r}: use an age (7d), epoch milliseconds or an ISO date"
        ) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(f"{PROG}: {line}\n")
    sys.stderr.flush()


# -- settings and backend ---------------------------------------------------------------------
def _tracer(args: argparse.Namespace) -> Any:
    """The process's tracer, with ``--tracking-uri`` applied (settings errors propagate)."""
    from routetrace.tracing.tracer import get_tracer

    tracer = get_tracer()
    if getattr(args, "tracking_uri", None):
        try:
            tracer.set_tracking_uri(args.tracking_uri)
        except ValueError as exc:
            raise CliError(f"--tracking-uri: {exc}", EXIT_USAGE) from None
    return tracer


def _backend(args: argparse.Namespace) -> Backend:
    tracer = _tracer(args)
    try:
        return tracer.backend
    except ValueError as exc:
        raise CliError(f"MLFLOW_TRACKING_URI: {exc}", EXIT_USAGE) from None


def _missing_store(backend: Backend) -> bool:
    """A local store nobody has written yet: reading it should not create it."""
    path = getattr(backend, "db_path", None)
    return isinstance(path, Path) and not path.exists()


def _no_store_hint(backend: Backend) -> None:
    _err(f"no traces yet at {backend.uri} (point --tracking-uri or MLFLOW_TRACKING_URI "
         "at the store your app writes to)")


def _empty_listing(backend: Backend, args: argparse.Namespace) -> bool:
    """For listing commands: with no store yet, print an empty list (``--json``) and the hint."""
    if not _missing_store(backend):
        return False
    if args.json:
        _out("[]")
    _no_store_hint(backend)
    return True


def _resolve_experiment(backend: Backend, name_or_id: str) -> ExperimentInfo:
    from routetrace.backends.base import BackendError
    from routetrace.tracing.destination import Experiment

    try:
        return backend.resolve_experiment(Experiment(name=name_or_id), create=False)
    except BackendError as exc:
        if exc.retryable:
            raise
    if name_or_id.isdigit():
        try:
            return backend.resolve_experiment(Experiment(experiment_id=name_or_id), create=False)
        except BackendError as exc:
            if exc.retryable:
                raise
    raise CliError(f"no experiment {name_or_id!r} in {backend.uri} "
                   f"('{PROG} experiments list' shows them)")


def _summaries(backend: Backend) -> list[dict[str, Any]]:
    summaries = getattr(backend, "experiment_summaries", None)
    if summaries is not None:
        return list(summaries())
    return [{**e.to_dict(), "traces": None, "errors": None, "last_request_time": None}
            for e in backend.list_experiments()]


def _find_trace(backend: Backend, text: str) -> Trace:
    """A full trace id, or a unique prefix of one as ``traces list`` prints it."""
    from routetrace.tracing.model import parse_trace_id

    try:
        trace_id = parse_trace_id(text)
    except ValueError:
        prefix = text.strip().lower()
        prefix = prefix if prefix.startswith("tr-") else "tr-" + prefix
        if not re.fullmatch(r"tr-[0-9a-f]{4,31}", prefix):
            raise CliError(f"{text!r} is not a trace id (tr- and 32 hex digits, or a prefix "
                           "of at least 4 of them)") from None
        matches = backend.search_traces(filter_string=f"trace.trace_id LIKE '{prefix}%'",
                                        max_results=2, include_spans=False)
        if not matches:
            raise CliError(f"no trace starting with {prefix} in {backend.uri}") from None
        if len(matches) > 1:
            raise CliError(f"{prefix} matches several traces; give more digits") from None
        trace_id = matches[0].info.trace_id
    trace = backend.get_trace(trace_id)
    if trace is None:
        raise CliError(f"no trace {trace_id} in {backend.uri}")
    return trace


# -- traces list / show / delete --------------------------------------------------------------
def _short_id(trace_id: str) -> str:
    return trace_id[:11]


def cmd_traces_list(args: argparse.Namespace) -> int:
    backend = _backend(args)
    if _empty_listing(backend, args):
        return 0
    ids = [_resolve_experiment(backend, e).experiment_id for e in args.experiment or ()]
    traces = backend.search_traces(experiment_ids=ids or None, filter_string=args.filter,
                                   max_results=args.limit, include_spans=False)
    if args.json:
        _out(_json_text([t.info.to_dict() for t in traces]))
        return 0
    if not traces:
        _out("No traces match." if (ids or args.filter) else f"No traces in {backend.uri}.")
        return 0
    rows = [
        [_short_id(i.trace_id), _when(i.request_time, short=_width() < 100),
         _safe(i.experiment_name or i.experiment_id), _safe(i.name or "–"), str(i.state),
         _duration_ms(i.execution_duration), _safe((i.request_preview or "")[:2000])]
        for i in (t.info for t in traces)
    ]

    def paint(col: int, cell: str, raw: str) -> str:
        return _paint(cell, raw) if col == 4 else cell

    for line in _table(["trace", "time", "experiment", "name", "status", "duration", "request"],
                       rows, flex=(2, 3, 6), right=(5,), paint=paint):
        _out(line)
    if len(traces) == args.limit:
        _out(f"(first {args.limit}; --limit N for more, `{PROG} traces show ID` for one)")
    return 0


def _tree(spans: list[Span]) -> list[tuple[Span, str]]:
    """Spans in display order with their tree prefix (``├─``, ``└─``)."""
    from routetrace.tracing.display import ordered_spans

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
        _out(f"{indent}{title}: {_cut(_safe(text), width - len(indent) - len(title) - 2)}")
        return
    _out(f"{indent}{title}:")
    for line in text.splitlines() or [""]:
        _out(f"{indent}  {_safe(line)}")


def render_trace(trace: Trace, *, full: bool = False, width: int | None = None) -> None:
    """The trace's header, its span tree as a waterfall, then previews, tags and metadata."""
    from routetrace.tracing.display import format_duration_ns, waterfall

    width = width or _width()
    info = trace.info
    _out(f"{_safe(info.name or 'trace')}  {_paint(str(info.state), str(info.state))}  "
         f"{_duration_ms(info.execution_duration)}  {_when(info.request_time)}")
    _out(f"{info.trace_id}  experiment {_safe(info.experiment_name or info.experiment_id)}")
    rows, total = waterfall(trace)
    if not rows:
        _out("(no spans)")
    else:
        placed = {r.span.span_id: r for r in rows}
        tree = _tree(trace.data.spans)
        labels = [lead + _safe(span.name) for span, lead in tree]
        types = [_safe(span.span_type) for span, _ in tree]
        type_w = max(len(t) for t in types)
        dur_w = 9
        name_w = min(max(len(label) for label in labels), max(16, width * 2 // 5))
        marker = 7 if any(str(s.status.status_code) == "ERROR" for s, _ in tree) else 0
        bar_w = max(10, width - name_w - type_w - dur_w - 6 - 2 - marker)
        block = "█" if _unicode_ok() else "#"
        axis = format_duration_ns(total)
        _out("")
        _out(f"{'span'.ljust(name_w)}  {'type'.ljust(type_w)}  {'duration'.rjust(dur_w)}  "
             f"|0{axis.rjust(bar_w - 1)}|")
        for (span, _), label, stype in zip(tree, labels, types, strict=True):
            row = placed[span.span_id]
            start = min(bar_w - 1, int(row.start * bar_w))
            end = min(bar_w, max(start + 1, round(row.end * bar_w)))
            bar = " " * start + block * (end - start) + " " * (bar_w - end)
            error = str(span.status.status_code) == "ERROR"
            if error:
                bar = _paint(bar, "ERROR")
            dur = format_duration_ns(row.duration_ns)
            _out(f"{_cut(label, name_w).ljust(name_w)}  {stype.ljust(type_w)}  "
                 f"{dur.rjust(dur_w)}  |{bar}|" + ("  " + _paint("ERROR", "ERROR") if error
                                                   else ""))
        for span, _ in tree:
            if not full and str(span.status.status_code) != "ERROR":
                continue
            _out("")
            head = (f"— {_safe(span.name)} ({_safe(span.span_type)}, "
                    f"{format_duration_ns(span.duration_ns)}, {span.status.status_code}"
                    + (f": {_safe(span.status.description)}" if span.status.description
                       else "") + ")")
            _out(head if full else _cut(head, width))
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
                _out(_cut(f"  event {_safe(event.name)}" + (f": {_safe(what)}" if what else ""),
                          width))
    _out("")
    _print_value("request", info.request_preview, "", full, width)
    _print_value("response", info.response_preview, "", full, width)
    _print_value("tags", info.tags, "", full, width)
    _print_value("metadata", info.trace_metadata, "", full, width)
    if not full:
        _out("(--full for every span's inputs, outputs and attributes; --json for all of it)")


def cmd_traces_show(args: argparse.Namespace) -> int:
    backend = _backend(args)
    if _missing_store(backend):
        raise CliError(f"no trace {args.trace_id} in {backend.uri} (the store is empty)")
    trace = _find_trace(backend, args.trace_id)
    if args.json:
        _out(_json_text(trace.to_dict()))
    else:
        render_trace(trace, full=args.full)
    return 0


def _count(backend: Backend, experiment_id: str, filter_string: str, cap: int) -> int:
    count = getattr(backend, "count_traces", None)
    if count is not None:
        return int(count(experiment_ids=[experiment_id], filter_string=filter_string))
    return len(backend.search_traces(experiment_ids=[experiment_id], filter_string=filter_string,
                                     max_results=cap, include_spans=False))


def _confirm(question: str, what: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError(f"refusing to {what} without confirmation: stdin is not a terminal; "
                       "pass --yes", EXIT_USAGE)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def cmd_traces_delete(args: argparse.Namespace) -> int:
    backend = _backend(args)
    if _missing_store(backend):
        _no_store_hint(backend)
        return 0
    exp = _resolve_experiment(backend, args.experiment)
    cut_ms = int((time.time() - (args.older_than or 0)) * 1000)
    cap = args.max or 10**9
    target = min(_count(backend, exp.experiment_id, f"trace.timestamp_ms <= {cut_ms}",
                        min(cap, 100_000)), cap)
    age = f" older than {args.older_than_text}" if args.older_than else ""
    if target == 0:
        _out(f"No traces{age} in experiment {_safe(exp.name)}; nothing deleted.")
        return 0
    which = " oldest" if args.max and args.max < 10**9 else ""
    question = f"Delete {target}{which} trace(s){age} of experiment {_safe(exp.name)} " \
        f"in {backend.uri}?"
    if not args.yes and not _confirm(question, f"delete {target} trace(s)"):
        raise CliError("not confirmed; nothing deleted")
    progress = Progress("deleting", target)
    deleted = 0
    try:
        # In chunks: short write transactions leave the store to the app's writers meanwhile.
        while deleted < target:
            n = backend.delete_traces(experiment_id=exp.experiment_id,
                                      max_timestamp_millis=cut_ms,
                                      max_traces=min(500, target - deleted))
            if n == 0:
                break
            deleted += n
            progress.update(deleted)
    finally:
        progress.close(deleted)
    _out(f"Deleted {deleted} trace(s) from experiment {_safe(exp.name)}.")
    return 0


# -- experiments, stats, spool ------------------------------------------------------------------
def cmd_experiments_list(args: argparse.Namespace) -> int:
    backend = _backend(args)
    if _empty_listing(backend, args):
        return 0
    rows = _summaries(backend)
    if args.json:
        _out(_json_text(rows))
        return 0

    def num(v: Any) -> str:
        return "–" if v is None else str(v)

    table = [[r["experiment_id"], _safe(r["name"]), num(r.get("traces")), num(r.get("errors")),
              _when(r.get("last_request_time"))] for r in rows]
    for line in _table(["id", "name", "traces", "errors", "last trace"], table, flex=(1,),
                       right=(2, 3)):
        _out(line)
    return 0


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _spool_figures(spool_dir: Path) -> dict[str, Any]:
    from routetrace.tracing.spool import spooled_files

    files = spooled_files(spool_dir)
    traces = 0
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
            with open(path, encoding="utf-8") as fh:
                traces += int(json.loads(fh.readline()).get("count", 0))
        except (OSError, ValueError, AttributeError):
            continue
    return {"dir": str(spool_dir), "files": len(files), "traces": traces, "bytes": size}


def cmd_stats(args: argparse.Namespace) -> int:
    import sqlite3

    from routetrace.backends.base import BackendError
    from routetrace.tracing.spool import export_summaries

    tracer = _tracer(args)
    backend = tracer.backend
    missing = _missing_store(backend)
    # The spool and the counts are local files: shown even when the store cannot be read,
    # which is when an operator needs them most.
    spool = _spool_figures(tracer.spool_dir())
    export = export_summaries(tracer.spool_dir())
    unreachable = None
    try:
        store = {"uri": backend.uri, **({} if missing else backend.stats())}
        experiments = [] if missing else [r for r in _summaries(backend) if r.get("traces") != 0]
        if not missing and "traces_to_build" in store:  # the listing built them: any failed?
            store["traces_failed_to_build"] = backend.stats().get("traces_failed_to_build", 0)
    except (BackendError, OSError, sqlite3.Error) as exc:
        unreachable = str(exc)
        store = {"uri": backend.uri, "error": unreachable}
        experiments = []
    if args.json:
        _out(_json_text({"store": store, "spool": spool, "export": export,
                         "experiments": experiments}))
        return 0
    _out(f"store       {store['uri']}")
    if unreachable is not None:
        _out(f"  unreadable {_safe(unreachable)}")
    elif missing:
        _out("            (no store yet)")
    else:
        if "path" in store:
            _out(f"  file      {store['path']}")
        _out(f"  size      {_human_bytes(store.get('bytes'))}")
        _out(f"  traces    {store.get('traces', '–')}")
        if store.get("traces_to_build"):
            _out(f"  of which  {store['traces_to_build']} stored as snapshots, built on first "
                 "read (this command's listing below builds them)")
        if store.get("traces_failed_to_build"):
            _out(f"  lost      {store['traces_failed_to_build']} stored but could not be built "
                 "(the log of the process that built them says why)")
    _out(f"spool       {spool['dir']}")
    _out(f"  waiting   {spool['files']} file(s), {spool['traces']} trace(s), "
         f"{_human_bytes(spool['bytes'])}"
         + (f"  (`{PROG} spool replay` writes them)" if spool["files"] else ""))
    if export["processes"]:
        replayed = f" ({export['replayed']} replayed since)" if export["replayed"] else ""
        _out(f"export      {export['written']} written, {export['spooled']} spooled{replayed}, "
             f"{export['dropped']} dropped (queue full), {export['failed']} failed, "
             f"{export['lost']} lost in flight, by {export['processes']} process(es) that "
             "ended with traces not written")
    if experiments:
        _out("")
        table = [[_safe(r["name"]), str(r.get("traces", "–")), str(r.get("errors", "–")),
                  _when(r.get("last_request_time"))] for r in experiments]
        for line in _table(["experiment", "traces", "errors", "last trace"], table, flex=(0,),
                           right=(1, 2)):
            _out(line)
    return 0


def cmd_spool_replay(args: argparse.Namespace) -> int:
    from routetrace.tracing.spool import replay_spool, spooled_files

    tracer = _tracer(args)
    spool_dir = Path(args.dir) if args.dir else tracer.spool_dir()
    total = len(spooled_files(spool_dir))
    if total == 0:
        _out(f"Nothing to replay in {spool_dir}.")
        return 0
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = replay_spool(spool_dir)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="routetrace-replay", daemon=True)
    progress = Progress("replaying", total)
    worker.start()
    while worker.is_alive():  # progress is the files that left the spool
        worker.join(0.1)
        progress.update(total - len(spooled_files(spool_dir)))
    if "error" in outcome:
        progress.close()
        raise outcome["error"]
    result = outcome["result"]
    progress.close(result.files)
    _out(f"Replayed {result.traces} trace(s) from {result.files} file(s) in {spool_dir}.")
    if result.failed:
        for failure in result.failed[:5]:
            _err(f"not replayed: {_safe(failure)}")
        raise CliError(f"{len(result.failed)} spool file(s) could not be written; "
                       "they stay in the spool for the next replay")
    return 0


# -- routes, push (modules of the routing and backends packages) ---------------------------
def cmd_routes(args: argparse.Namespace) -> int:
    _tracer(args)  # ROUTETRACE_CONFIG and the default experiment come from the settings
    from routetrace.routing import config as route_config
    from routetrace.routing.explain import describe, explain

    if args.method and not args.explain:
        raise CliError("--method goes with --explain PATH", EXIT_USAGE)
    table = route_config.load(args.config)  # ConfigError names the file, line and key
    text = explain(table, args.explain, args.method or "GET") if args.explain \
        else describe(table)
    for line in text.splitlines():
        _out(_safe(line))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from routetrace.backends import backend_for_uri
    from routetrace.backends.push import push

    tracer = _tracer(args)
    try:
        target = backend_for_uri(args.target, tracer.settings)
    except ValueError as exc:
        raise CliError(f"--to: {exc}", EXIT_USAGE) from None
    progress = Progress("pushing", None)
    try:
        result = push(args.source, target, experiment=args.experiment, since_ms=args.since,
                      progress=lambda done, total: progress.update(done, total))
    finally:
        progress.close()
    spooled = (f", {result.spool_traces} from {result.spool_files} spool file(s)"
               if result.spool_files else "")
    _out(f"Pushed {result.pushed} trace(s) from {args.source} to {target.uri}{spooled}; "
         f"{result.skipped} already there; {result.seconds:.1f} s.")
    if result.failed:
        for failure in result.failed[:5]:
            _err(f"not pushed: {_safe(failure)}")
        raise CliError(f"{len(result.failed)} batch(es) could not be pushed; run the same "
                       "command again to retry them (what arrived is skipped)")
    return 0


# -- ui ----------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def cmd_ui(args: argparse.Namespace) -> int:
    import socket

    if not _is_loopback(args.host) and not args.allow_remote:
        raise CliError(f"refusing to serve the viewer on {args.host}: it shows request data "
                       "(inputs, captured headers and bodies) to anyone who can connect, with "
                       "no login. Pass --allow-remote if that is what you want", EXIT_USAGE)
    try:
        import uvicorn

        from routetrace.viewer import create_app
    except ImportError as exc:
        raise CliError(f"the viewer needs Starlette and uvicorn ({exc.name} is missing): "
                       "pip install 'routetrace[viewer]'") from None
    backend = _backend(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                       + (" (pick another with --port)" if args.port else "")) from None
    sock.listen(2048)  # connections queue from now on, while uvicorn starts
    port = sock.getsockname()[1]
    hosts = None if not _is_loopback(args.host) else LOOPBACK_NAMES
    app = create_app(backend, allowed_hosts=hosts)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    _out(f"routetrace viewer on http://{shown}:{port}/ over {backend.uri} (Ctrl-C stops it)")
    if not _is_loopback(args.host):
        _err("warning: the viewer is reachable from other machines and shows request data; "
             "it has no login")
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


# -- demo --------------------------------------------------------------------------------------
def _examples_dir() -> Path:
    import routetrace

    return Path(routetrace.__file__).resolve().parent.parent / "examples"


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_requests(client: Any) -> list[tuple[str, str]]:
    """The mix the demo sends; returns (request, outcome) pairs for the report."""
    import httpx

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/math/add", {"json": {"a": 2, "b": 3}}),
        ("POST", "/math/mul", {"json": {"a": 6, "b": 7}}),
        ("POST", "/math/div", {"json": {"a": 1, "b": 0}}),
        ("POST", "/math/sub", {"json": {"a": 10, "b": 4}}),
        ("POST", "/chat/demo", {"json": {"message": "Tell me about tracing."}}),
        ("POST", "/chat/demo", {"json": {"message": "And about routes?"}}),
        ("GET", "/slow", {}),
        ("GET", "/error", {}),
        ("GET", "/healthz", {}),
    ]
    outcomes = []
    for method, path, kwargs in calls:
        label = f"{method} {path}"
        for attempt in (1, 2):  # the server closes the connection after a 500: retry once
            try:
                with client.stream(method, path, **kwargs) as response:
                    chunks = sum(1 for _ in response.iter_raw())
                extra = f", {chunks} chunks" if chunks > 1 else ""
                outcomes.append((label, f"{response.status_code}{extra}"))
                break
            except httpx.TransportError as exc:
                if attempt == 2:
                    outcomes.append((label, f"failed: {type(exc).__name__}"))
    return outcomes


def cmd_demo(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    import tempfile

    try:
        import httpx
        import uvicorn  # noqa: F401  (the server runs it; fail here with the fix)
    except ImportError as exc:
        raise CliError(f"the demo needs httpx, uvicorn and FastAPI ({exc.name} is missing): "
                       "pip install 'routetrace[all]' fastapi") from None
    examples = Path(args.examples) if args.examples else _examples_dir()
    app_file = examples / "fastapi_app.py"
    config = examples / "routetrace.toml"
    if not app_file.is_file() or not config.is_file():
        raise CliError(f"the demo runs the example app of a source checkout; "
                       f"{app_file} or {config} is missing (--examples DIR points elsewhere)")
    store = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"
    if "://" not in store and not store.startswith(("file:", "sqlite:")):
        store = str(Path(store).expanduser().absolute())
    start_ms = int(time.time() * 1000)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "ROUTETRACE_CONFIG": str(config),
        "ROUTETRACE_SIGNAL_HANDLERS": "true",  # SIGTERM flushes
        "MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS": "0.25",
        "PYTHONUNBUFFERED": "1",
    }
    _out(f"Starting the example app (examples/fastapi_app.py) on http://127.0.0.1:{port}, "
         f"traces to {store}")
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in the finally below)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--app-dir", str(examples), "--log-level", "warning",
         "--no-access-log"],
        cwd=str(examples), env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def server_log() -> str:
        log.seek(0)
        lines = [line.rstrip() for line in log.read().splitlines() if line.strip()]
        return " | ".join(lines[-3:]) or "(no output)"

    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=httpx.Timeout(60.0, connect=2.0),
                          trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise CliError(f"the example app exited with {server.returncode}: "
                                   f"{server_log()}")
                try:
                    client.get("/healthz", timeout=1.0)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise CliError("the example app did not start within 60 s: "
                                       f"{server_log()}") from None
                    time.sleep(0.1)  # polling a subprocess for readiness
            outcomes = _demo_requests(client)
        _out("Requests sent:")
        for label, outcome in outcomes:
            _out(f"  {label:<18} {outcome}")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # uvicorn shuts down; routetrace flushes
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        code = server.returncode
        log_text = server_log()
        log.close()
    if code not in (0, -signal.SIGTERM):
        _err(f"the example app exited with {code}: {log_text}")
    return _demo_summary(args, store, start_ms)


def _demo_summary(args: argparse.Namespace, store: str, start_ms: int) -> int:
    from routetrace.backends import backend_for_uri

    backend = backend_for_uri(store, _tracer(args).settings)
    since = f"trace.timestamp_ms >= {start_ms}"
    rows = []
    total = 0
    for exp in backend.list_experiments():
        n = _count(backend, exp.experiment_id, since, 10_000)
        if not n:
            continue
        errors = _count(backend, exp.experiment_id, f"{since} AND trace.status = 'ERROR'",
                        10_000)
        total += n
        rows.append([_safe(exp.name), str(n), str(errors)])
    _out("")
    if not rows:
        raise CliError(f"the demo wrote no traces to {store}; is the middleware installed "
                       "in examples/fastapi_app.py?")
    _out(f"Traces written by this run ({total}):")
    for line in _table(["experiment", "traces", "errors"], rows, flex=(0,), right=(1, 2)):
        _out("  " + line)
    default = Path("./mlruns").absolute()
    uri_flag = "" if Path(store) == default else f" --tracking-uri {store}"
    _out("")
    _out(f"Look at them:  {PROG}{uri_flag} ui      (then open http://127.0.0.1:5050)")
    _out(f"           or: {PROG}{uri_flag} traces list")
    return 0


# -- the parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from routetrace import __version__

    p = _Parser(prog=PROG, description="Look at, clean up and move routetrace traces.")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="where traces are (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    traces = sub.add_parser("traces", help="list, show or delete traces")
    tsub = traces.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = tsub.add_parser("list", help="a table of traces, newest first")
    t.add_argument("--experiment", "-e", action="append", metavar="NAME",
                   help="only this experiment (name or id; repeatable)")
    t.add_argument("--filter", "-f", metavar="FILTER",
                   help="MLflow filter, e.g. \"trace.status = 'ERROR' AND tags.route = '/x'\"")
    t.add_argument("--limit", "-n", type=_positive, default=25, metavar="N",
                   help="at most N traces (default 25)")
    t.add_argument("--json", action="store_true", help="trace infos as JSON")
    t.set_defaults(func=cmd_traces_list)
    t = tsub.add_parser("show", help="one trace: the span tree as a waterfall")
    t.add_argument("trace_id", metavar="TRACE_ID", help="tr-… id, or a unique prefix of it")
    t.add_argument("--full", action="store_true", help="every span's inputs, outputs, attributes")
    t.add_argument("--json", action="store_true", help="the whole trace as JSON")
    t.set_defaults(func=cmd_traces_show)
    t = tsub.add_parser("delete", help="delete traces of one experiment")
    t.add_argument("--experiment", "-e", required=True, metavar="NAME", help="name or id")
    t.add_argument("--older-than", dest="older_than_text", metavar="AGE",
                   help="only traces older than AGE (90s, 15m, 12h, 7d, 2w)")
    t.add_argument("--max", type=_positive, metavar="N", help="at most N traces, oldest first")
    t.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    t.set_defaults(func=cmd_traces_delete)

    e = sub.add_parser("experiments", help="experiments and their trace counts")
    esub = e.add_subparsers(dest="action", metavar="ACTION", required=True)
    el = esub.add_parser("list", help="experiments with trace and error counts")
    el.add_argument("--json", action="store_true")
    el.set_defaults(func=cmd_experiments_list)

    r = sub.add_parser("routes", help="the route table, or where one request's trace goes")
    r.add_argument("--config", metavar="PATH",
                   help="route table (default: $ROUTETRACE_CONFIG, routetrace.toml, pyproject)")
    r.add_argument("--explain", metavar="PATH", help="which rule a request path hits")
    r.add_argument("--method", metavar="M", help="request method for --explain (default GET)")
    r.set_defaults(func=cmd_routes)

    pu = sub.add_parser("push", help="copy traces from one store to another")
    pu.add_argument("--from", dest="source", required=True, metavar="SRC", help="source URI")
    pu.add_argument("--to", dest="target", required=True, metavar="DST", help="target URI")
    pu.add_argument("--experiment", "-e", metavar="NAME", help="only this experiment")
    pu.add_argument("--since", type=_since_ms, metavar="WHEN",
                    help="only traces since WHEN (7d, epoch ms or an ISO date)")
    pu.set_defaults(func=cmd_push)

    s = sub.add_parser("stats", help="store size, spool backlog, traces per experiment")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    sp = sub.add_parser("spool", help="batches that could not be written")
    spsub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    rp = spsub.add_parser("replay", help="write spooled batches to their backend")
    rp.add_argument("--dir", metavar="PATH", help="spool directory (default: the store's)")
    rp.set_defaults(func=cmd_spool_replay)

    u = sub.add_parser("ui", help="the web viewer")
    u.add_argument("--port", type=int, default=5050, help="default 5050 (0: any free port)")
    u.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    u.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the viewer shows request data, no login)")
    u.set_defaults(func=cmd_ui)

    d = sub.add_parser("demo", help="run the example app, send requests, summarise the traces")
    d.add_argument("--examples", metavar="DIR", help="examples directory (default: the checkout's)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``routetrace`` console script; returns the exit status."""
    from routetrace.tracing.settings import SettingsError

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "older_than_text", None):
            args.older_than = parse_age(args.older_than_text)
        elif hasattr(args, "older_than_text"):
            args.older_than = None
        return int(args.func(args) or 0)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `routetrace traces list | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the exit flush)
        except OSError:
            pass
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            raise
        code, message = _describe_error(exc, SettingsError)
        _err(_safe(message))
        return code


def _describe_error(exc: Exception, settings_error: type) -> tuple[int, str]:
    from routetrace.backends.base import BackendError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, argparse.ArgumentTypeError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, settings_error):
        return EXIT_USAGE, f"bad environment: {exc}"
    if isinstance(exc, BackendError):
        return EXIT_FAILURE, str(exc)
    if isinstance(exc, ValueError):
        return EXIT_FAILURE, str(exc)
    return EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc} (--debug shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
