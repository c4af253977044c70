"""Core micro-benchmarks: span start+end on the request path, enqueue cost, store throughput.

    .venv/bin/python -m benchmarks.bench_core [--json]

Each figure runs in this process against a fresh local store in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any


def _best_us(fn, number: int, repeat: int = 5) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(number)
        runs.append((time.perf_counter() - started) / number * 1e6)
    return min(runs), statistics.median(runs)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="routetrace-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = os.path.join(tmp, "mlruns")
    os.environ["MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE"] = str(10 * args.n)
    os.environ["ROUTETRACE_SIGNAL_HANDLERS"] = "false"
    import routetrace
    from routetrace.backends.local import LocalStore
    from routetrace.core import tracer as tracer_mod
    from routetrace.core.build import record_trace
    from routetrace.core.destination import Experiment
    from routetrace.export.groups import write_now

    tracer = tracer_mod.reset()
    results: dict[str, Any] = {"python": sys.version.split()[0], "n": args.n}

    # 1. Root span start + end through the tracer (what the middleware pays), no export.
    logger = tracer.exporter.logger
    put = logger.put
    logger.put = lambda trace: True  # measure the span, not the queue
    start_span = tracer.start_span

    def root_only(n):
        for _ in range(n):
            start_span("GET /hello", "UNKNOWN", parent=None).end()

    results["root_span_start_end_us"] = _best_us(root_only, args.n)

    def with_child(n):
        for _ in range(n):
            with routetrace.start_span("root"), routetrace.start_span("child"):
                pass

    results["start_span_root_plus_child_us"] = _best_us(with_child, args.n)

    @routetrace.trace
    def traced(a, b):
        return a + b

    def decorator(n):
        for _ in range(n):
            traced(1, 2)

    results["trace_decorator_call_us"] = _best_us(decorator, args.n)
    logger.put = put

    # 2. Enqueue: root span start+end including the hand-off to the export queue.
    def enqueue(n):
        for _ in range(n):
            start_span("GET /hello", "UNKNOWN", parent=None).end()

    started = time.perf_counter()
    enqueue(args.n)
    results["root_span_with_enqueue_us"] = (time.perf_counter() - started) / args.n * 1e6
    flush_started = time.perf_counter()
    assert routetrace.flush(120)
    results["flush_seconds_after_n"] = time.perf_counter() - flush_started

    # 3. Local store write throughput, batches of 500 small traces: built once and written in
    # their final form (what the export worker does for the local store).
    def small_traces() -> list:
        live = []
        logger.put = live.append  # collect finished traces without writing them
        for i in range(args.n):
            with routetrace.start_span(f"GET /items/{i % 10}") as span:
                span.set_inputs({"path": "/items", "i": i})
                span.set_outputs({"status": 200})
        logger.put = put
        return live

    destination = Experiment(name="throughput")
    for key, prepare in (("local_store_traces_per_s", lambda t: record_trace(t, ())),):
        store = LocalStore(os.path.join(tmp, key, "routetrace.sqlite"))
        live = small_traces()
        started = time.perf_counter()
        for i in range(0, len(live), 500):
            write_now(store, destination, [prepare(t) for t in live[i : i + 500]])
        elapsed = time.perf_counter() - started
        results[key] = len(live) / elapsed
        assert store.count_traces() == len(live)
    results["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            if isinstance(value, tuple):
                print(f"{key:36s} best {value[0]:8.2f}   median {value[1]:8.2f}")
            elif isinstance(value, float):
                print(f"{key:36s} {value:12.2f}")
            else:
                print(f"{key:36s} {value}")
    return results


if __name__ == "__main__":
    main()
