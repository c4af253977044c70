"""The benchmark app and its tracing configurations, one per process.

The app is the same everywhere: a Starlette app with ``GET /hello`` → ``hi`` and
``POST /chat/{session}`` echoing its JSON body. ``setup(name, workdir)`` wraps it for one
configuration and returns a :class:`Setup`: ``flush(timeout)`` waits for the configuration's
exporter, ``final()`` brings what was flushed to its backend's final form (the local store's
deferred build; nothing for the others, whose final form is the encoded request the sink
received), ``kept()`` counts the traces its backend actually holds.

- ``bare``: the app alone;
- ``floor``: :class:`benchmarks.floor.FloorMiddleware`, the least a root-span-per-request
  middleware does (ids, clock, ``ContextVar``, route match, status, a deque append), nothing
  exported or kept: what any such middleware in Python costs at least;
- ``routetrace``: ``TracingMiddleware``, local store in ``workdir``, async logging;
- ``routetrace-otlp``: the same, to an OTLP/HTTP protobuf collector (the sink): the encoding
  the MLflow server backend sends;
- ``routetrace-file``: the same, to an OTLP-JSON lines file;
- ``otel``: ``opentelemetry-instrumentation-asgi``'s ``OpenTelemetryMiddleware``, SDK
  ``TracerProvider`` + ``BatchSpanProcessor`` + the OTLP/HTTP protobuf exporter to the sink;
- ``otel-nosendrecv``: the same with ``exclude_spans=["receive", "send"]``;
- ``ddtrace``: ddtrace's ``TraceMiddleware``, its writer sending to the sink as the agent;
- ``logfire``: ``logfire.instrument_asgi``, ``send_to_logfire=False`` and a batch OTLP/HTTP
  protobuf exporter to the sink;
- ``sentry``: ``sentry_sdk.init`` (its Starlette integration), every transaction sampled, the
  DSN pointing at the sink;
- ``mlflow``: MLflow Tracing through a pure ASGI middleware around ``mlflow.start_span``,
  async trace logging (``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=true``) to a SQLite store.

Every queue is raised so that nothing is dropped: what is measured is keeping every trace.
``benchmarks.peers:app`` is the app for ``uvicorn`` (configuration from ``BENCH_CONFIG``,
work directory from ``BENCH_DIR``, sink port from ``BENCH_SINK_PORT``); it answers
``GET /__bench/final`` itself, untraced: flush, then final form, inside the server process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks import sink

CONFIGS = ("bare", "floor", "routetrace", "routetrace-otlp", "routetrace-file", "otel",
           "otel-nosendrecv", "ddtrace", "logfire", "sentry", "mlflow")
# The package each configuration needs beyond the test extra (the ``bench`` extra has them).
NEEDS = {"ddtrace": "ddtrace", "logfire": "logfire", "sentry": "sentry_sdk",
         "otel": "opentelemetry.exporter.otlp.proto.http",
         "otel-nosendrecv": "opentelemetry.exporter.otlp.proto.http"}
SINK_CONFIGS = ("routetrace-otlp", "otel", "otel-nosendrecv", "ddtrace", "logfire", "sentry")
FINAL_PATH = "/__bench/final"
QUEUE = 1_000_000


class Setup(NamedTuple):
    """One configuration, ready: the app and how to drain and count its traces."""

    app: Any
    flush: Callable[[float], bool]
    kept: Callable[[], int | None]
    final: Callable[[], None]


def _nothing() -> None:
    return None


def missing(name: str) -> str | None:
    """Why configuration ``name`` cannot run here (a package not installed), or None."""
    module = NEEDS.get(name)
    try:
        found = module is None or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"{module} is not installed (pip install -e '.[bench]')"


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


def environment(name: str, workdir: Path, sink_port: int | None = None) -> dict[str, str]:
    """Environment variables a configuration needs before anything is imported."""
    env: dict[str, str] = {"BENCH_CONFIG": name, "BENCH_DIR": str(workdir),
                           # Every exporter's queue raised: none may drop under saturation.
                           "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": str(QUEUE),
                           "OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE)}
    sink_url = f"http://127.0.0.1:{sink_port}"
    if sink_port is not None:
        env["BENCH_SINK_PORT"] = str(sink_port)
    if name == "routetrace":
        env["MLFLOW_TRACKING_URI"] = str(workdir / "store")
    elif name == "routetrace-otlp":
        env["MLFLOW_TRACKING_URI"] = f"otlp+{sink_url}"
    elif name == "routetrace-file":
        env["MLFLOW_TRACKING_URI"] = (workdir / "traces.jsonl").as_uri()
    elif name == "ddtrace":
        env.update({"DD_TRACE_AGENT_URL": sink_url, "DD_SERVICE": "bench",
                    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
                    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
                    "DD_TRACE_STARTUP_LOGS": "false", "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
                    "DD_TRACE_WRITER_BUFFER_SIZE_BYTES": str(256 << 20)})
    elif name == "mlflow":
        env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
                    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
                    "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                    "DO_NOT_TRACK": "true"})
    return env


def setup(name: str, workdir: Path) -> Setup:
    if name == "bare":
        return Setup(starlette_app(), lambda timeout: True, lambda: None, _nothing)
    if name == "floor":
        from benchmarks.floor import FloorMiddleware

        return Setup(FloorMiddleware(starlette_app()), lambda timeout: True, lambda: None,
                     _nothing)
    if name.startswith("routetrace"):
        return _routetrace(starlette_app(), workdir, local=name == "routetrace")
    port = os.environ.get("BENCH_SINK_PORT", "")
    if name in SINK_CONFIGS and not port:
        raise ValueError(f"configuration {name!r} sends to the sink: set BENCH_SINK_PORT")
    if name in ("otel", "otel-nosendrecv"):
        return _otel(starlette_app(), workdir, port, exclude=name == "otel-nosendrecv")
    if name == "ddtrace":
        return _ddtrace(starlette_app(), workdir)
    if name == "logfire":
        return _logfire(starlette_app(), workdir, port)
    if name == "sentry":
        return _sentry(workdir, port)
    if name == "mlflow":
        return _mlflow(starlette_app(), workdir)
    raise ValueError(f"unknown configuration {name!r}; one of {', '.join(CONFIGS)}")


def count_kept(name: str, workdir: Path) -> int | None:
    """Traces the configuration's backend holds in ``workdir`` (read only, any process)."""
    if name in ("bare", "floor"):  # the floor keeps nothing
        return None
    if name == "routetrace":
        from routetrace.backends.local import LocalStore

        store = LocalStore.from_uri(str(workdir / "store"))
        try:
            return store.count_traces()
        finally:
            store.close()
    if name == "routetrace-file":
        return sum(1 for p in workdir.glob("traces.jsonl*") for _ in p.open("rb"))
    if name in SINK_CONFIGS:
        return sink.kept(workdir)
    conn = sqlite3.connect(workdir / "mlflow.db")
    try:
        return conn.execute("SELECT COUNT(*) FROM trace_info").fetchone()[0]
    finally:
        conn.close()


def _routetrace(app: Any, workdir: Path, local: bool) -> Setup:
    import routetrace
    from routetrace.middleware import TracingMiddleware

    traced = TracingMiddleware(app, config={
        "experiment": "bench",
        "routes": [{"path": "/chat/{session}", "experiment": "chat"}],
    })

    def final() -> None:
        # A read, inside the measured CPU: whatever a store left for its first read to do
        # before search_traces and `routetrace traces list` can answer is counted.
        routetrace.search_traces(max_results=1, return_type="list")

    name = "routetrace" if local else os.environ["BENCH_CONFIG"]
    return Setup(traced, lambda timeout: routetrace.flush(timeout=timeout),
                 lambda: count_kept(name, workdir), final if local else _nothing)


def _otel(app: Any, workdir: Path, port: str, exclude: bool) -> Setup:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")))
    trace.set_tracer_provider(provider)
    middleware = OpenTelemetryMiddleware(
        app, exclude_spans=["receive", "send"] if exclude else None)
    return Setup(middleware, lambda timeout: provider.force_flush(int(timeout * 1000)),
                 lambda: sink.kept(workdir), _nothing)


def _ddtrace(app: Any, workdir: Path) -> Setup:
    from ddtrace.contrib.asgi import TraceMiddleware
    from ddtrace.trace import tracer

    def flush(timeout: float) -> bool:
        tracer.flush()
        return True

    return Setup(TraceMiddleware(app), flush, lambda: sink.kept(workdir), _nothing)


def _logfire(app: Any, workdir: Path, port: str) -> Setup:
    import logfire
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    logfire.configure(
        send_to_logfire=False, console=False, metrics=False, service_name="bench",
        data_dir=workdir / ".logfire",
        additional_span_processors=[BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))])

    def flush(timeout: float) -> bool:
        return bool(logfire.force_flush(int(timeout * 1000)))

    return Setup(logfire.instrument_asgi(app), flush, lambda: sink.kept(workdir), _nothing)


def _sentry(workdir: Path, port: str) -> Setup:
    import sentry_sdk

    # Before the app exists: the Starlette integration patches Starlette's classes.
    sentry_sdk.init(dsn=f"http://public@127.0.0.1:{port}/1", traces_sample_rate=1.0,
                    transport_queue_size=QUEUE, send_client_reports=False)

    def flush(timeout: float) -> bool:
        sentry_sdk.flush(timeout=timeout)
        return True

    return Setup(starlette_app(), flush, lambda: sink.kept(workdir), _nothing)


def _mlflow(app: Any, workdir: Path) -> Setup:
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

    return Setup(MlflowTracingMiddleware(app), flush, lambda: count_kept("mlflow", workdir),
                 _nothing)


def served(configured: Setup) -> Any:
    """The configured app with ``GET /__bench/final`` answered in front of it, untraced: the
    over-HTTP runner calls it after the load, so that the flush and the final form happen
    inside the server process, whose CPU it reads."""
    app = configured.app

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != FINAL_PATH:
            await app(scope, receive, send)
            return
        flushed = configured.flush(120)
        configured.final()
        body = json.dumps({"flushed": bool(flushed)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return outer


def __getattr__(name: str) -> Any:
    if name == "app":  # uvicorn benchmarks.peers:app
        return served(setup(os.environ["BENCH_CONFIG"], Path(os.environ["BENCH_DIR"])))
    raise AttributeError(name)
