"""Where the in-process cost goes: the request path, the export worker, the garbage collector.

    .venv/bin/python -m benchmarks.bench_worker [--mode hold|noop|real|bare] [-n 20000]

The same mixed loop as :mod:`benchmarks.inprocess`, 4 repetitions after a warm-up, with the
export worker in one of these modes:

- ``bare``: the app without routetrace;
- ``hold``: the hand-off drops the trace (the request path alone);
- ``noop``: the worker takes batches and releases them without writing (the queue's cost:
  traces living until the worker takes them);
- ``real``: the worker writes to the local store.

Prints µs per request for each repetition and "all work" (the loops plus the flush of what
they left queued, per request), the cyclic GC's collections and time per generation, and in
``real`` mode the store writes' wall and CPU time per trace. Run the modes one after another
and compare within minutes: the machine's noise is larger than most single changes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("bare", "hold", "noop", "real"), default="real")
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    os.environ["ROUTETRACE_SIGNAL_HANDLERS"] = "false"
    os.environ["MLFLOW_TRACKING_URI"] = str(workdir / "store")
    os.environ["MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE"] = "1000000"
    from benchmarks import inprocess, peers

    config = "bare" if args.mode == "bare" else "routetrace"
    app, flush, _, _ = peers.setup(config, workdir)
    writes = [0, 0.0, 0.0, 0]  # calls, wall s, thread CPU s, traces
    if config == "routetrace":
        from routetrace.backends.local import LocalStore
        from routetrace.core.tracer import get_tracer
        from routetrace.export import worker

        if args.mode == "hold":
            get_tracer().exporter.logger.put = lambda trace: trace.release()  # type: ignore[method-assign]
        elif args.mode == "noop":
            def process(self: Any, batch: list[Any]) -> None:
                for trace in batch:
                    trace.release()

            worker.Workers.process = process  # type: ignore[method-assign]
        else:
            write = LocalStore.write_traces

            def timed(self: Any, experiment: Any, traces: list[Any]) -> None:
                wall, cpu = time.perf_counter(), time.thread_time()
                write(self, experiment, traces)
                writes[0] += 1
                writes[1] += time.perf_counter() - wall
                writes[2] += time.thread_time() - cpu
                writes[3] += len(traces)

            LocalStore.write_traces = timed  # type: ignore[method-assign]

    counts, seconds, started = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            counts[info["generation"]] += 1
            seconds[info["generation"]] += time.perf_counter() - started[0]

    n = args.requests

    async def run() -> None:
        await inprocess._loop(app, 2000)
        flush(60)
        gc.callbacks.append(on_gc)
        total, each = 0.0, []
        for _ in range(4):
            elapsed = await inprocess._loop(app, n)
            total += elapsed
            each.append(elapsed / n * 1e6)
        begun = time.perf_counter()
        flush(600)
        flushed = time.perf_counter() - begun
        gc.callbacks.remove(on_gc)
        print(f"{args.mode:5s} loops {' '.join(f'{x:.1f}' for x in each)} µs/request; "
              f"all work {(total + flushed) / (4 * n) * 1e6:.1f} µs/request "
              f"(flush after the loops {flushed:.2f} s)")
        print(f"      gc collections per generation {counts}, "
              f"seconds {[round(s, 3) for s in seconds]}: "
              f"{sum(seconds) / (4 * n) * 1e6:.1f} µs/request")
        if writes[0]:
            print(f"      store writes {writes[0]} for {writes[3]} traces: "
                  f"{writes[1] / writes[3] * 1e6:.1f} µs wall, "
                  f"{writes[2] / writes[3] * 1e6:.1f} µs CPU per trace")

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
