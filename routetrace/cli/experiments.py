"""``routetrace experiments list``."""

from __future__ import annotations

import argparse
from typing import Any

from routetrace.cli.common import backend_from, echo, empty_listing, summaries_of
from routetrace.cli.render import format_time, json_text, safe, tabulate


def cmd_experiments_list(args: argparse.Namespace) -> int:
    backend = backend_from(args)
    if empty_listing(backend, args):
        return 0
    rows = summaries_of(backend)
    if args.json:
        echo(json_text(rows))
        return 0

    def num(v: Any) -> str:
        return "–" if v is None else str(v)

    table = [[r["experiment_id"], safe(r["name"]), num(r.get("traces")), num(r.get("errors")),
              format_time(r.get("last_request_time"))] for r in rows]
    for line in tabulate(["id", "name", "traces", "errors", "last trace"], table, flex=(1,),
                         right=(2, 3)):
        echo(line)
    return 0

