"""In-process cost of the tracing middleware per request, side by side in one run.

    .venv/bin/python benchmarks/bench_middleware.py            # 20 000 requests x 5
    .venv/bin/python benchmarks/bench_middleware.py -n 2000 -r 3  # quick look

A Starlette hello-world app is called directly (no server, no sockets) in a tight loop with an
in-memory ``receive``/``send``, so what is measured is the middleware and the app, nothing
else. Configurations, each in its own subprocess (OpenTelemetry's global provider can be set
once per process):

- ``bare``: the app alone;
- ``routetrace``: ``TracingMiddleware``, local store, async logging, every trace kept (the
  queue is sized for the run; the trace count is checked after ``flush``);
- ``otel``: ``opentelemetry-instrumentation-asgi``'s ``OpenTelemetryMiddleware`` with an SDK
  ``TracerProvider``, a ``BatchSpanProcessor`` and an exporter that drops everything;
- ``match``: ``RouteTable.match`` on a 50-rule table (first, last, no match).

Reported: the best and the median of the repetitions, in microseconds per request. For
routetrace: "request path alone" is the loop while the export worker is held back (traces
queue up and are written, untimed, after every slice of 1000 requests); "export running" is
the loop while the worker builds and writes traces concurrently, sharing the GIL, as in a
server; "with export" adds the ``flush()`` that writes every remaining trace to SQLite,
divided over the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

SCOPE: dict[str, Any] = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
    "method": "GET", "scheme": "http", "path": "/hello", "raw_path": b"/hello",
    "root_path": "", "query_string": b"",
    "headers": [(b"host", b"localhost:8000"), (b"user-agent", b"bench/1.0"),
                (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
}


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello, world")

    return Starlette(routes=[Route("/hello", hello)])


async def _loop(app: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = SCOPE
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return time.perf_counter() - start


HOLD_SLICE = 1000


def _time(app: Any, n: int, repeat: int, after: Any = None, hold: Any = None
          ) -> dict[str, Any]:
    asyncio.run(_loop(app, min(n, 2000)))  # warm up
    if after:
        after()
    loops, totals = [], []
    for _ in range(repeat):
        if hold is not None:
            # Time the loop in slices of HOLD_SLICE requests with the export worker held back,
            # flushing (untimed) between slices, so at most a slice of traces waits in memory
            # (as in a server whose worker keeps up) while none of the export work is timed.
            seconds = 0.0
            for start in range(0, n, HOLD_SLICE):
                with hold():
                    seconds += asyncio.run(_loop(app, min(HOLD_SLICE, n - start)))
                after()
        else:
            seconds = asyncio.run(_loop(app, n))
        loops.append(seconds / n * 1e6)
        if after:
            start = time.perf_counter()
            after()
            totals.append((seconds + time.perf_counter() - start) / n * 1e6)
    out = {"best": min(loops), "median": statistics.median(loops)}
    if totals:
        out["export_best"] = min(totals)
        out["export_median"] = statistics.median(totals)
    return out


def run_bare(n: int, repeat: int) -> dict[str, Any]:
    return _time(_starlette_app(), n, repeat)


def run_routetrace(n: int, repeat: int) -> dict[str, Any]:
    import routetrace
    from routetrace.middleware import TracingMiddleware

    app = _starlette_app()
    app.add_middleware(TracingMiddleware, config={
        "experiment": "bench", "routes": [{"path": "/hello", "experiment": "hello"}],
    })
    flush = lambda: routetrace.flush(timeout=600)  # noqa: E731
    result = _time(app, n, repeat, after=flush)
    # The same loop with the export worker held at its queue lock (``put`` takes no lock, the
    # worker's ``take`` does): the request path alone, export done between timed slices.
    from routetrace.core.tracer import get_tracer

    held = _time(app, n, repeat, after=flush, hold=lambda: get_tracer().exporter.logger.queue.lock)
    result["held_best"], result["held_median"] = held["best"], held["median"]
    stats = routetrace.get_export_stats()
    result["traces_written"] = stats.get("written", 0)
    result["traces_dropped"] = stats.get("dropped", 0)
    result["traces_expected"] = 2 * (min(n, 2000) + n * repeat)
    return result


def run_otel(n: int, repeat: int) -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DropExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    processor = BatchSpanProcessor(DropExporter())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    app = OpenTelemetryMiddleware(_starlette_app())
    return _time(app, n, repeat, after=lambda: provider.force_flush())


def run_match(n: int, repeat: int) -> dict[str, Any]:
    import timeit

    from routetrace.routing import from_mapping

    routes = [{"path": f"/api/v1/service{i}/{{item}}", "experiment": f"e{i}"} for i in range(48)]
    routes += [{"path": "/chat/**", "experiment": "chat"},
               {"path": "/math/{op}", "methods": ["POST"], "experiment": "math"}]
    table = from_mapping({"exclude": ["/healthz", "/static/*"], "routes": routes})
    assert len(table.rules) == 50
    out = {}
    number = max(n * 10, 100_000)
    for label, path, method in [("first rule", "/api/v1/service0/42", "GET"),
                                ("last rule", "/math/add", "POST"),
                                ("no match", "/nothing/here", "GET")]:
        # A path seen before (the per-path cache) and a path seen for the first time
        # (index walk + one regex; the cache is bypassed).
        times = timeit.repeat(lambda p=path, m=method: table.match(p, m), number=number,
                              repeat=repeat)
        out[f"{label}, seen"] = min(times) / number * 1e9  # ns
        key = f"{method} {path}"
        times = timeit.repeat(lambda p=path, k=key: table._lookup(k, p), number=number,
                              repeat=repeat)
        out[f"{label}, first sight"] = min(times) / number * 1e9
    return out


RUNNERS = {"bare": run_bare, "routetrace": run_routetrace, "otel": run_otel, "match": run_match}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("-r", "--repeat", type=int, default=5)
    parser.add_argument("--only", choices=sorted(RUNNERS), help="run one configuration here")
    parser.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(RUNNERS[args.only](args.requests, args.repeat)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_"))}
        env.update({
            "MLFLOW_TRACKING_URI": os.path.join(tmp, "mlruns"),
            "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": str(2 * args.requests + 4000),
            "ROUTETRACE_SIGNAL_HANDLERS": "false",
        })
        for name in ("bare", "routetrace", "otel", "match"):
            out = subprocess.run(
                [sys.executable, __file__, "--only", name, "-n", str(args.requests),
                 "-r", str(args.repeat)],
                env=env, capture_output=True, text=True, check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    bare, rt, otel = results["bare"], results["routetrace"], results["otel"]
    print(f"{args.requests} requests x {args.repeat} repetitions, Python "
          f"{sys.version.split()[0]}; microseconds per request (best / median)")
    print(f"{'configuration':<34}{'best':>8}{'median':>9}{'overhead (best)':>17}")
    # (the table below is pasted into docs/benchmarks.md)
    rows = [
        ("bare Starlette", bare["best"], bare["median"]),
        ("routetrace, request path alone", rt["held_best"], rt["held_median"]),
        ("routetrace, export running", rt["best"], rt["median"]),
        ("routetrace, with export (flush)", rt["export_best"], rt["export_median"]),
        ("OpenTelemetry ASGI middleware", otel["best"], otel["median"]),
        ("OpenTelemetry, with force_flush", otel["export_best"], otel["export_median"]),
    ]
    for label, best, median in rows:
        print(f"{label:<34}{best:>8.1f}{median:>9.1f}{best - bare['best']:>+17.1f}")
    print(f"routetrace traces written {rt['traces_written']} of {rt['traces_expected']} "
          f"(dropped {rt['traces_dropped']})")
    print("route matching, 50-rule table (ns per match): " + ", ".join(
        f"{k} {v:.0f}" for k, v in results["match"].items()))


if __name__ == "__main__":
    main()
