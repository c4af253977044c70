"""``routetrace traces list / show / delete``."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import TYPE_CHECKING

from routetrace.cli.common import (
    EXIT_USAGE,
    PROG,
    CliError,
    backend_from,
    count_traces,
    echo,
    empty_listing,
    missing_store,
    no_store_hint,
    resolve_experiment,
)
from routetrace.cli.render import (
    Progress,
    format_duration_ms,
    format_time,
    json_text,
    paint_state,
    render_trace,
    safe,
    tabulate,
    terminal_width,
)

if TYPE_CHECKING:
    from routetrace.backends.base import Backend
    from routetrace.core.model import Trace


def _find_trace(backend: Backend, text: str) -> Trace:
    """A full trace id, or a unique prefix of one as ``traces list`` prints it."""
    from routetrace.core.model import parse_trace_id

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


def _short_ids(trace_ids: list[str]) -> list[str]:
    """The shortest prefixes (11 characters at least) that tell the listed ids apart.

    Trace ids begin with their start time, so traces of the same minute share their first
    digits: a fixed cut would print the same prefix for all of them. ``traces show`` takes
    any of these prefixes.
    """
    width = 11
    longest = max(map(len, trace_ids), default=width)
    while width < longest and len({t[:width] for t in trace_ids}) < len(set(trace_ids)):
        width += 1
    return [t[:width] for t in trace_ids]


def cmd_traces_list(args: argparse.Namespace) -> int:
    backend = backend_from(args)
    if empty_listing(backend, args):
        return 0
    ids = [resolve_experiment(backend, e).experiment_id for e in args.experiment or ()]
    traces = backend.search_traces(experiment_ids=ids or None, filter_string=args.filter,
                                   max_results=args.limit, include_spans=False)
    if args.json:
        echo(json_text([t.info.to_dict() for t in traces]))
        return 0
    if not traces:
        echo("No traces match." if (ids or args.filter) else f"No traces in {backend.uri}.")
        return 0
    infos = [t.info for t in traces]
    rows = [
        [short, format_time(i.request_time, short=terminal_width() < 120),
         safe(i.experiment_name or i.experiment_id), safe(i.name or "–"), str(i.state),
         format_duration_ms(i.execution_duration), safe((i.request_preview or "")[:2000])]
        for short, i in zip(_short_ids([i.trace_id for i in infos]), infos, strict=True)
    ]

    def paint(col: int, cell: str, raw: str) -> str:
        return paint_state(cell, raw) if col == 4 else cell

    for line in tabulate(["trace", "time", "experiment", "name", "status", "duration", "request"],
                         rows, flex=(2, 3, 6), right=(5,), paint=paint, shrink_first=(6,)):
        echo(line)
    if len(traces) == args.limit:
        echo(f"(first {args.limit}; --limit N for more, `{PROG} traces show ID` for one)")
    return 0


def cmd_traces_show(args: argparse.Namespace) -> int:
    backend = backend_from(args)
    if missing_store(backend):
        raise CliError(f"no trace {args.trace_id} in {backend.uri} (the store is empty)")
    trace = _find_trace(backend, args.trace_id)
    if args.json:
        echo(json_text(trace.to_dict()))
    else:
        render_trace(trace, full=args.full)
    return 0


def _confirm(question: str, what: str) -> bool:
    if not sys.stdin.isatty():
        raise CliError(f"refusing to {what} without confirmation: stdin is not a terminal; "
                       "pass --yes", EXIT_USAGE)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def cmd_traces_delete(args: argparse.Namespace) -> int:
    backend = backend_from(args)
    if missing_store(backend):
        no_store_hint(backend)
        return 0
    exp = resolve_experiment(backend, args.experiment)
    cut_ms = int((time.time() - (args.older_than or 0)) * 1000)
    cap = args.max or 10**9
    target = min(count_traces(backend, exp.experiment_id, f"trace.timestamp_ms <= {cut_ms}",
                              min(cap, 100_000)), cap)
    age = f" older than {args.older_than_text}" if args.older_than else ""
    if target == 0:
        echo(f"No traces{age} in experiment {safe(exp.name)}; nothing deleted.")
        return 0
    which = " oldest" if args.max and args.max < 10**9 else ""
    question = f"Delete {target}{which} trace(s){age} of experiment {safe(exp.name)} " \
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
    echo(f"Deleted {deleted} trace(s) from experiment {safe(exp.name)}.")
    return 0

