"""``routetrace routes``: the route table, or which rule one request hits (routing package)."""

from __future__ import annotations

import argparse

from routetrace.cli.common import EXIT_USAGE, CliError, echo, tracer_from
from routetrace.cli.render import safe


def cmd_routes(args: argparse.Namespace) -> int:
    tracer_from(args)  # ROUTETRACE_CONFIG and the default experiment come from the settings
    from routetrace.routing import config as route_config
    from routetrace.routing.explain import describe, explain

    if args.method and not args.explain:
        raise CliError("--method goes with --explain PATH", EXIT_USAGE)
    table = route_config.load(args.config)  # ConfigError names the file, line and key
    text = explain(table, args.explain, args.method or "GET") if args.explain \
        else describe(table)
    for line in text.splitlines():
        echo(safe(line))
    return 0

