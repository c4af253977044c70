"""The benchmark app and its tracing configurations, one per process.

The app is the same everywhere: a Starlette app with ``GET /hello`` → ``hi`` and
``POST /chat/{session}`` echoing its JSON body. ``setup(name, workdir)`` wraps it for one
configuration and returns ``(app, flush, kept)``: ``flush(timeout)`` waits for the
configuration's exporter, ``kept()`` counts the traces its backend actually holds.

- ``bare``: the app alone;
- ``routetrace``: ``TracingMiddleware``, local store in ``workdir``, async logging;
- ``otel``: ``opentelemetry-instrumentation-asgi``'s ``OpenTelemetryMiddleware``, SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` (defaults) + an exporter that only counts;
- ``otel-nosendrecv``: the same with ``exclude_spans=["receive", "send"]``;
- ``mlflow``: MLflow Tracing through a pure ASGI middleware around ``mlflow.start_span``,
  async trace logging (``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=true``) to a SQLite store.

``benchmarks.peers:app`` is the app for ``uvicorn`` (configuration from ``BENCH_CONFIG``,
work directory from ``BENCH_DIR``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIGS = ("bare", "routetrace", "otel", "otel-nosendrecv", "mlflow")


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse(await request.json())

    return Starlette(routes=[Route("/hello", hello),
                             Route("/chat/{session}", chat, methods=["POST"])])


def environment(name: str, workdir: Path) -> dict[str, str]:
    """Environment variables a configuration needs before anything is imported."""
    env: dict[str, str] = {"BENCH_CONFIG": name, "BENCH_DIR": str(workdir)}
    if name == "routetrace":
        env.update({"MLFLOW_TRACKING_URI": str(workdir / "store"),
                    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": "1000000"})
    elif name == "mlflow":
        env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
                    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
                    "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                    "DO_NOT_TRACK": "true"})
    return env


def setup(name: str, workdir: Path) -> tuple[Any, Callable[[float], bool], Callable[[], int]]:
    app = starlette_app()
    if name == "bare":
        return app, lambda timeout: True, lambda: 0
    if name == "routetrace":
        return _routetrace(app, workdir)
    if name in ("otel", "otel-nosendrecv"):
        return _otel(app, workdir, exclude=name == "otel-nosendrecv")
    if name == "mlflow":
        return _mlflow(app, workdir)
    raise ValueError(f"unknown configuration {name!r}; one of {', '.join(CONFIGS)}")


def count_kept(name: str, workdir: Path) -> int | None:
    """Traces the configuration's backend holds in ``workdir`` (read only, any process)."""
    if name == "bare":
        return None
    if name == "routetrace":
        from routetrace.backends.local import LocalStore

        store = LocalStore.from_uri(str(workdir / "store"))
        try:
            return store.count_traces()
        finally:
            store.close()
    if name.startswith("otel"):
        return _CountFile(workdir / "otel-exported.txt").total()
    conn = sqlite3.connect(workdir / "mlflow.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM trace_info").fetchone()[0]
    finally:
        conn.close()


def snapshots_to_build(workdir: Path) -> int:
    """Traces the routetrace local store in ``workdir`` holds as snapshots not yet built."""
    from routetrace.backends.local import LocalStore

    store = LocalStore.from_uri(str(workdir / "store"))
    try:
        return int(store.stats()["traces_to_build"])
    finally:
        store.close()


def _routetrace(app: Any, workdir: Path):
    import routetrace
    from routetrace.middleware import TracingMiddleware

    traced = TracingMiddleware(app, config={
        "experiment": "bench",
        "routes": [{"path": "/chat/{session}", "experiment": "chat"}],
    })

    return (traced, lambda timeout: routetrace.flush(timeout=timeout),
            lambda: count_kept("routetrace", workdir))


class _CountFile:
    """Root spans exported, appended to a file per batch: the count survives a process that
    dies before any exit hook runs (uvicorn re-raising SIGTERM)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, n: int) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{n}\n")

    def total(self) -> int:
        try:
            return sum(int(x) for x in self.path.read_text().split())
        except FileNotFoundError:
            return 0


def _otel(app: Any, workdir: Path, exclude: bool):
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    counts = _CountFile(workdir / "otel-exported.txt")

    class CountingExporter(SpanExporter):  # the "no-op" exporter: counts root spans, no I/O
        def export(self, spans: Any) -> SpanExportResult:
            roots = sum(1 for s in spans if s.parent is None or s.parent.is_remote)
            if roots:
                counts.add(roots)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(CountingExporter()))
    trace.set_tracer_provider(provider)
    middleware = OpenTelemetryMiddleware(
        app, exclude_spans=["receive", "send"] if exclude else None)
    return middleware, lambda timeout: provider.force_flush(int(timeout * 1000)), counts.total


def _mlflow(app: Any, workdir: Path):
    import mlflow

    mlflow.set_experiment("bench")  # creates the SQLite store now, not inside the timing

    class MlflowTracingMiddleware:
        """What a user writes to trace requests with MLflow: a root span per request."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            status: list[int] = []

            async def send_wrapper(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            with mlflow.start_span(name=f"{scope['method']} {scope['path']}") as span:
                span.set_inputs({"method": scope["method"], "path": scope["path"]})
                await self.app(scope, receive, send_wrapper)
                span.set_outputs({"status_code": status[0] if status else None})

    def flush(timeout: float) -> bool:
        mlflow.flush_trace_async_logging()
        return True

    return MlflowTracingMiddleware(app), flush, lambda: count_kept("mlflow", workdir)


def __getattr__(name: str) -> Any:
    if name == "app":  # uvicorn benchmarks.peers:app
        app, _, _ = setup(os.environ["BENCH_CONFIG"], Path(os.environ["BENCH_DIR"]))
        return app
    raise AttributeError(name)
