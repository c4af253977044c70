"""The request path against minimal middlewares, GET through Starlette, export held.

    .venv/bin/python -m benchmarks.bench_variants

Each variant wraps the same Starlette hello-world: ``bare`` (no middleware), ``pass``
(a pure ASGI pass-through), ``wrap`` (a ``send`` wrapper reading the status), ``span`` (a
root span started and ended around the app, OpenTelemetry context attached: the floor of any
tracing middleware built on routetrace's core), ``routetrace`` (``TracingMiddleware``, the
hand-off replaced by a no-op). Best and median µs per request of 7 interleaved rounds of
5 000 requests: the difference between two rows is what that layer costs.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

os.environ.setdefault("ROUTETRACE_SIGNAL_HANDLERS", "false")

SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/hello", "raw_path": b"/hello", "query_string": b"",
         "root_path": "", "headers": [(b"host", b"x"), (b"user-agent", b"bench")],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


def main() -> None:
    import tempfile

    os.environ.setdefault("MLFLOW_TRACKING_URI", tempfile.mkdtemp(prefix="bench-variants-"))
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from routetrace.middleware import TracingMiddleware
    from routetrace.tracing.tracer import get_tracer

    tracer = get_tracer()
    tracer.logger.put = lambda trace: trace.release()  # type: ignore[method-assign]

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    class Pass:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    class Wrap(Pass):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            status = None

            async def wrapped(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, wrapped)

    class Span(Pass):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            span = tracer.start_span("GET", "UNKNOWN", parent=None)
            token = otel_context.attach(otel_trace.set_span_in_context(span))

            async def wrapped(message: Any) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    span.end()

            try:
                await self.app(scope, receive, wrapped)
            finally:
                otel_context.detach(token)

    def make(middleware: Any = None, **kwargs: Any) -> Any:
        return Starlette(routes=[Route("/hello", hello)],
                         middleware=[Middleware(middleware, **kwargs)] if middleware else [])

    apps = {"bare": make(), "pass": make(Pass), "wrap": make(Wrap), "span": make(Span),
            "routetrace": make(TracingMiddleware, config={"routes": []})}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def loop(app: Any, n: int) -> None:
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    async def run() -> None:
        results: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(7):
            for name, app in apps.items():
                await loop(app, 500)
                started = time.perf_counter()
                await loop(app, 5000)
                results[name].append((time.perf_counter() - started) / 5000 * 1e6)
        bare = min(results["bare"])
        for name, values in results.items():
            print(f"{name:12s} best {min(values):6.2f}  median {sorted(values)[3]:6.2f}  "
                  f"(+{min(values) - bare:.2f} over bare)")

    asyncio.run(run())


if __name__ == "__main__":
    main()
