"""``routetrace stats`` (store, spool backlog, export losses) and ``routetrace spool replay``."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from routetrace.cli.common import (
    PROG,
    CliError,
    echo,
    echo_error,
    missing_store,
    summaries_of,
    tracer_from,
)
from routetrace.cli.render import Progress, format_time, json_text, safe, tabulate


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
    from routetrace.export.spool import spooled_files

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
    from routetrace.export.spool import export_summaries

    tracer = tracer_from(args)
    backend = tracer.backend
    missing = missing_store(backend)
    # The spool and the counts are local files: shown even when the store cannot be read,
    # which is when an operator needs them most.
    spool = _spool_figures(tracer.spool_dir())
    export = export_summaries(tracer.spool_dir())
    unreachable = None
    try:
        store = {"uri": backend.uri, **({} if missing else backend.stats())}
        experiments = [] if missing else [r for r in summaries_of(backend)
                                          if r.get("traces") != 0]
    except (BackendError, OSError, sqlite3.Error) as exc:
        unreachable = str(exc)
        store = {"uri": backend.uri, "error": unreachable}
        experiments = []
    if args.json:
        echo(json_text({"store": store, "spool": spool, "export": export,
                        "experiments": experiments}))
        return 0
    echo(f"store       {store['uri']}")
    if unreachable is not None:
        echo(f"  unreadable {safe(unreachable)}")
    elif missing:
        echo("            (no store yet)")
    else:
        if "path" in store:
            echo(f"  file      {store['path']}")
        echo(f"  size      {_human_bytes(store.get('bytes'))}")
        echo(f"  traces    {store.get('traces', '–')}")
    echo(f"spool       {spool['dir']}")
    echo(f"  waiting   {spool['files']} file(s), {spool['traces']} trace(s), "
         f"{_human_bytes(spool['bytes'])}"
         + (f"  (`{PROG} spool replay` writes them)" if spool["files"] else ""))
    if export["processes"]:
        replayed = f" ({export['replayed']} replayed since)" if export["replayed"] else ""
        echo(f"export      {export['written']} written, {export['spooled']} spooled{replayed}, "
             f"{export['dropped']} dropped (queue full), {export['failed']} failed, "
             f"{export['lost']} lost in flight, by {export['processes']} process(es) that "
             "ended with traces not written")
    if experiments:
        echo("")
        table = [[safe(r["name"]), str(r.get("traces", "–")), str(r.get("errors", "–")),
                  format_time(r.get("last_request_time"))] for r in experiments]
        for line in tabulate(["experiment", "traces", "errors", "last trace"], table, flex=(0,),
                             right=(1, 2)):
            echo(line)
    return 0


def cmd_spool_replay(args: argparse.Namespace) -> int:
    from routetrace.backends.replay import replay_spool
    from routetrace.export.spool import spooled_files

    tracer = tracer_from(args)
    spool_dir = Path(args.dir) if args.dir else tracer.spool_dir()
    total = len(spooled_files(spool_dir))
    if total == 0:
        echo(f"Nothing to replay in {spool_dir}.")
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
    echo(f"Replayed {result.traces} trace(s) from {result.files} file(s) in {spool_dir}.")
    if result.failed:
        for failure in result.failed[:5]:
            echo_error(f"not replayed: {safe(failure)}")
        raise CliError(f"{len(result.failed)} spool file(s) could not be written; "
                       "they stay in the spool for the next replay")
    return 0

