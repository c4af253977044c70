"""``routetrace push``: copy traces between stores (``routetrace.backends.push``)."""

from __future__ import annotations

import argparse

from routetrace.cli.common import EXIT_USAGE, CliError, echo, tracer_from
from routetrace.cli.render import Progress, raise_failures


def cmd_push(args: argparse.Namespace) -> int:
    from routetrace.backends import backend_for_uri
    from routetrace.backends.push import push

    tracer = tracer_from(args)
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
    echo(f"Pushed {result.pushed} trace(s) from {args.source} to {target.uri}{spooled}; "
         f"{result.skipped} already there; {result.seconds:.1f} s.")
    raise_failures(result.failed, "not pushed",
                   f"{len(result.failed)} batch(es) could not be pushed; run the same "
                   "command again to retry them (what arrived is skipped)")
    return 0

