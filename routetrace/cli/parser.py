"""The argument parser, dispatch to the command functions, and errors turned into one line and
an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from routetrace.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    PROG,
    CliError,
    echo_error,
    parse_age,
    port_number,
    positive_int,
    since_ms,
)
from routetrace.cli.demo import cmd_demo
from routetrace.cli.experiments import cmd_experiments_list
from routetrace.cli.push import cmd_push
from routetrace.cli.render import safe
from routetrace.cli.routes import cmd_routes
from routetrace.cli.stats import cmd_spool_replay, cmd_stats
from routetrace.cli.traces import cmd_traces_delete, cmd_traces_list, cmd_traces_show
from routetrace.cli.ui import cmd_ui


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise CliError(f"{message} (see '{self.prog} --help')", EXIT_USAGE)


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
    t.add_argument("--limit", "-n", type=positive_int, default=25, metavar="N",
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
    t.add_argument("--max", type=positive_int, metavar="N", help="at most N traces, oldest first")
    t.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    t.set_defaults(func=cmd_traces_delete)

    e = sub.add_parser("experiments", help="experiments and their trace counts")
    e.set_defaults(func=cmd_experiments_list, json=False)  # `list` is the one action
    esub = e.add_subparsers(dest="action", metavar="ACTION")
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
    pu.add_argument("--since", type=since_ms, metavar="WHEN",
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
    u.add_argument("--port", type=port_number, default=5050, help="default 5050 (0: any free port)")
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
    from routetrace.core.settings import SettingsError

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
        echo_error("interrupted")
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
        echo_error(safe(message))
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

