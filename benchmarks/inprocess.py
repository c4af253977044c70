"""Part 1 of ``run_all``: each configuration's app called directly, in a tight loop.

    .venv/bin/python -m benchmarks.inprocess --config routetrace -n 5000

Mixed requests: even ones ``GET /hello``, odd ones ``POST /chat/{i % 100}`` with a small JSON
body, through an in-memory ``receive``/``send`` (no sockets). After a warm-up (flushed and
brought to final form), one timed run, measured in CPU time, which a machine shared with
other work does not inflate the way it does wall time:

- *request path*: the CPU of the thread that runs the requests, during the loop;
- *export*: the rest of the process's CPU (every thread, native ones included) from the loop's
  start until the exporter's flush returns: whatever the exporter did alongside the loop and
  what was left queued;
- *deferred build*: the process's CPU bringing what was flushed to its backend's final form
  (``Setup.final``: the local store's build on first read; nothing for the others, whose
  final form is the encoded request the sink received);
- *total*: the three together.

Configurations that send somewhere send to :mod:`benchmarks.sink`, started here, in its own
process. Prints one JSON line, with the traces the backend holds at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def run(config: str, n: int, workdir: Path, warm: int = 1000) -> dict[str, Any]:
    from benchmarks import sink
    from benchmarks.peers import SINK_CONFIGS, environment, setup

    running = sink.start(workdir) if config in SINK_CONFIGS else None
    try:
        os.environ.update(environment(config, workdir, running and running.port))
        configured = setup(config, workdir)
        app = configured.app
        asyncio.run(_loop(app, warm))
        configured.flush(300)
        configured.final()
        wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        asyncio.run(_loop(app, n))
        thread1, cpu1 = time.thread_time(), time.process_time()
        flushed = configured.flush(300)
        cpu2 = time.process_time()
        configured.final()
        cpu3, wall3 = time.process_time(), time.perf_counter()
        kept = configured.kept()
    finally:
        if running is not None:
            running.stop()
    request_us = (thread1 - thread0) / n * 1e6
    out = {"config": config, "requests": warm + n, "timed": n, "flushed": bool(flushed),
           "request_us": request_us,
           "export_us": (cpu2 - cpu0) / n * 1e6 - request_us,
           "build_us": (cpu3 - cpu2) / n * 1e6,
           "total_us": (cpu3 - cpu0) / n * 1e6,
           "wall_us": (wall3 - wall0) / n * 1e6,
           "loop_cpu_us": (cpu1 - cpu0) / n * 1e6, "kept": kept}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("-n", "--requests", type=int, default=5000, help="timed requests")
    parser.add_argument("--warm", type=int, default=1000, help="warm-up requests")
    args = parser.parse_args()
    workdir = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-"))
    print(json.dumps(run(args.config, args.requests, workdir, args.warm)))


if __name__ == "__main__":
    main()
