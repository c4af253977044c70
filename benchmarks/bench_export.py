"""Part 3 of ``run_all``: the export path of routetrace, each figure in a fresh process.

    .venv/bin/python -m benchmarks.bench_export --part throughput|shutdown|backend-down

- ``throughput``: 50 000 request traces (as the middleware makes them) queued with the export
  worker held, then released: traces per second through build + local-store write, end to end.
- ``shutdown``: a full queue (``MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE``, default 1000) of
  request traces, then the process's shutdown hook: seconds until everything is written.
- ``backend-down``: ``MLFLOW_TRACKING_URI`` is an MLflow server nobody listens on; 100 000
  requests through the middleware; RSS sampled every 10 000: it stays flat (bounded queue,
  bounded retry list, the rest spooled to disk or dropped and counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _app() -> Any:
    from benchmarks.peers import setup

    return setup("routetrace", Path(tempfile.mkdtemp())).app


def _requests(app: Any, n: int) -> None:
    from benchmarks.inprocess import _loop

    asyncio.run(_loop(app, n))


def throughput(n: int = 50_000) -> dict[str, Any]:
    os.environ["MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE"] = str(n + 1000)
    import routetrace
    from routetrace.core.tracer import get_tracer

    app = _app()
    _requests(app, 100)
    assert routetrace.flush(60)
    logger = get_tracer().exporter.logger
    with logger.queue.lock:  # workers wait at their queue lock; the request path takes none
        _requests(app, n)
    started = time.perf_counter()
    assert routetrace.flush(300)
    seconds = time.perf_counter() - started
    stats = routetrace.get_export_stats()
    return {"traces": n, "seconds": seconds, "traces_per_s": n / seconds,
            "written": stats["written"] - 100, "dropped": stats["dropped"]}


def shutdown(n: int | None = None) -> dict[str, Any]:
    import routetrace
    from routetrace.core.tracer import get_tracer
    from routetrace.export import lifecycle

    tracer = get_tracer()
    n = n or tracer.settings.max_queue_size
    app = _app()
    _requests(app, 100)
    assert routetrace.flush(60)
    with tracer.exporter.logger.queue.lock:
        _requests(app, n)
    queued = len(tracer.exporter.logger.queue)
    started = time.perf_counter()
    lifecycle.shutdown(reason="benchmark")
    seconds = time.perf_counter() - started
    stats = routetrace.get_export_stats()
    return {"queued": queued, "seconds": seconds, "written": stats["written"] - 100,
            "spooled": stats["spooled"], "dropped": stats["dropped"]}


def backend_down(n: int = 100_000, step: int = 10_000) -> dict[str, Any]:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    os.environ["ROUTETRACE_SPOOL_DIR"] = spool
    import routetrace

    app = _app()
    samples = []
    _requests(app, 1000)
    base = _rss_mib()
    started = time.perf_counter()
    for _ in range(n // step):
        _requests(app, step)
        samples.append(round(_rss_mib(), 1))
    elapsed = time.perf_counter() - started
    stats = routetrace.get_export_stats()
    spooled_bytes = sum(p.stat().st_size for p in Path(spool).iterdir() if p.is_file())
    return {"requests": n, "rss_start_mib": base, "rss_samples_mib": samples,
            "rss_growth_mib": max(samples) - base, "seconds": elapsed, **stats,
            "spool_mib": spooled_bytes / 2**20}


PARTS = {"throughput": throughput, "shutdown": shutdown, "backend-down": backend_down}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", required=True, choices=sorted(PARTS))
    args = parser.parse_args()
    print(json.dumps({"part": args.part, **PARTS[args.part]()}))


if __name__ == "__main__":
    main()
