"""Part 1 of ``run_all``: each configuration's app called directly, in a tight loop.

    .venv/bin/python -m benchmarks.inprocess --config routetrace -n 20000 -r 5

Mixed requests: even ones ``GET /hello``, odd ones ``POST /chat/{i % 100}`` with a small JSON
body, through an in-memory ``receive``/``send`` (no sockets). The export of each
configuration runs while it is timed (its worker threads share the GIL, as in a server).
Prints one JSON line: microseconds per request (best and median of the repetitions), the
requests made, and the traces the backend holds after a flush.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = b'{"message": "hello there", "n": 1}'


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"),
                    (b"accept", b"*/*"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }


GET = _scope("GET", "/hello", [])
POSTS = [_scope("POST", f"/chat/{i}", [(b"content-type", b"application/json"),
                                       (b"content-length", str(len(BODY)).encode())])
         for i in range(100)]


async def _loop(app: Any, n: int) -> float:
    get_msg = {"type": "http.request", "body": b"", "more_body": False}
    post_msg = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive_get() -> dict[str, Any]:
        return get_msg

    async def receive_post() -> dict[str, Any]:
        return post_msg

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.perf_counter()
    for i in range(n):
        if i & 1:
            await app(dict(POSTS[(i >> 1) % 100]), receive_post, send)
        else:
            await app(dict(GET), receive_get, send)
    return time.perf_counter() - start


def run(config: str, n: int, repeat: int, workdir: Path) -> dict[str, Any]:
    from benchmarks.peers import setup

    app, flush, kept = setup(config, workdir)
    warm = min(n, 2000)
    asyncio.run(_loop(app, warm))
    flush(300)
    times = [asyncio.run(_loop(app, n)) / n * 1e6 for _ in range(repeat)]
    started = time.perf_counter()
    flushed = flush(300)
    flush_s = time.perf_counter() - started
    out = {"config": config, "best_us": min(times), "median_us": statistics.median(times),
           "runs_us": times, "requests": warm + n * repeat,
           "flushed": bool(flushed), "flush_s": flush_s,
           # Everything the process spent, the export the loop left queued included: what a
           # saturated server pays per request. The headline figure.
           "all_us": statistics.mean(times) + flush_s * 1e6 / (n * repeat)}
    if config == "routetrace":
        from benchmarks.peers import snapshots_to_build

        # The local store builds its snapshots when first read (or when idle): time that
        # separately, here on the first count.
        to_build = snapshots_to_build(workdir)
        started = time.perf_counter()
        out["kept"] = kept()
        if to_build:
            out["build_on_read_us"] = (time.perf_counter() - started) * 1e6 / to_build
    else:
        out["kept"] = kept()
    if config == "routetrace":
        # The request path alone: the same loop in slices of 1000 with the export worker held
        # at its queue lock (the request path takes none), every slice written, untimed,
        # before the next: what a request pays when the writer runs on another core.
        from routetrace.tracing.tracer import get_tracer

        logger = get_tracer().logger
        held = []
        for _ in range(repeat):
            seconds = 0.0
            for start in range(0, n, 1000):
                with logger._lock:
                    seconds += asyncio.run(_loop(app, min(1000, n - start)))
                flush(300)
            held.append(seconds / n * 1e6)
        out.update({"held_best_us": min(held), "held_median_us": statistics.median(held),
                    "requests": out["requests"] + n * repeat, "kept": kept()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("-r", "--repeat", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-"))
    print(json.dumps(run(args.config, args.requests, args.repeat, workdir)))


if __name__ == "__main__":
    main()
