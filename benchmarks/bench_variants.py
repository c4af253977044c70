"""The request path built up layer by layer, GET through Starlette, export held; then POST.

    .venv/bin/python -m benchmarks.bench_variants

Each variant wraps the same Starlette hello-world; each row adds one thing to the row above:

- ``bare``: no middleware; ``pass``: a pure ASGI pass-through; ``wrap``: a ``send`` wrapper
  reading the status;
- ``minimal``: the floor, a minimal root-span middleware (:mod:`benchmarks.floor`, also the
  ``floor`` configuration of ``run_all``): random ids, the clock, a ``ContextVar``, one
  compiled regex for the route, the status, a deque append at the last body chunk;
- ``+receive``: the floor's code with a ``receive`` wrapper too;
- ``+root span``: routetrace's trace and root span (``Tracer.start_root``, ended by
  ``LiveTrace.end_span``, hand-off released) instead of the list;
- ``+otel context``: the span set as OpenTelemetry's current span;
- ``+trace id header``: the ``x-trace-id`` response header added (message and list copied);
- ``+exchange``: the object the capture writes to;
- ``routetrace``: ``TracingMiddleware`` itself (its hand-off replaced by a release): the
  difference to ``+exchange`` is routetrace's glue (rules, ``traceparent``, sampling,
  destination, status rules, the live registry, the queue's accounting).

Then ``POST /chat/{session}`` echoing its JSON body (the benchmark app's, with the route
table of ``benchmarks/peers.py``: the rule names an experiment, set as the context's
destination), ``bare POST`` and ``routetrace POST``: the ``receive`` wrapper at work.

Best and median µs per request of 9 interleaved rounds of 5 000 requests.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import time
from typing import Any

from benchmarks import floor

os.environ.setdefault("ROUTETRACE_SIGNAL_HANDLERS", "false")

SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": "/hello", "raw_path": b"/hello", "query_string": b"",
         "root_path": "", "headers": [(b"host", b"x"), (b"user-agent", b"bench")],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
BODY = b'{"messages": [{"role": "user", "content": "hello there"}], "n": 3}'
POST_SCOPE = {**SCOPE, "method": "POST", "path": "/chat/1", "raw_path": b"/chat/1",
              "headers": [(b"host", b"x"), (b"user-agent", b"bench"),
                          (b"content-type", b"application/json"),
                          (b"content-length", b"%d" % len(BODY))]}
ROUNDS = 9


def main() -> None:
    import tempfile

    os.environ.setdefault("MLFLOW_TRACKING_URI", tempfile.mkdtemp(prefix="bench-variants-"))
    from opentelemetry.context import Context
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from routetrace.core.tracer import get_tracer
    from routetrace.middleware import TracingMiddleware
    from routetrace.middleware.asgi import _ASGIExchange, _otel_context_var

    tracer = get_tracer()
    tracer.exporter.logger.put = lambda trace: trace.release()  # type: ignore[method-assign]
    otel_var, span_key = _otel_context_var()
    assert otel_var is not None, "OpenTelemetry's context is not the default one"
    current = floor.CURRENT
    finished: collections.deque[Any] = collections.deque(maxlen=floor.KEPT)
    route = re.compile(floor.ROUTES)

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def chat(request: Any) -> JSONResponse:
        return JSONResponse(await request.json())

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

    def layered(level: int) -> type:
        """The floor's code (:class:`benchmarks.floor.FloorMiddleware`) with the first
        ``level`` layers added (``level`` ≥ 1)."""

        class Layered(Pass):
            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return
                route.fullmatch(scope["path"])
                if level >= 2:
                    record: Any = tracer.start_root("GET", "UNKNOWN", None, None, None, None)
                else:
                    record = [random.getrandbits(128), random.getrandbits(64),
                              time.time_ns(), None, None]
                if level >= 5:
                    ex = _ASGIExchange(None, None, "GET", scope["path"])  # type: ignore[arg-type]
                    ex.scope = scope
                    ex.span = record
                token = current.set(record)
                if level >= 3:
                    otel_token = otel_var.set(Context({span_key: record}))

                def wrapped(message: Any) -> Any:
                    if message["type"] == "http.response.start":
                        if level < 2:
                            record[3] = message["status"]
                        if level >= 4:
                            message = message.copy()
                            message["headers"] = [*message["headers"], (
                                b"x-trace-id", b"tr-%032x" % random.getrandbits(128))]
                    elif not message.get("more_body"):
                        if level >= 2:
                            record.trace.end_span(record, time.time_ns())
                        else:
                            record[4] = time.time_ns()
                            finished.append(record)
                    return send(message)

                async def receive_wrapped() -> Any:
                    return await receive()

                try:
                    await self.app(scope, receive_wrapped, wrapped)
                finally:
                    current.reset(token)
                    if level >= 3:
                        otel_var.reset(otel_token)

        return Layered

    def make(middleware: Any = None, **kwargs: Any) -> Any:
        return Starlette(routes=[Route("/hello", hello),
                                 Route("/chat/{session}", chat, methods=["POST"])],
                         middleware=[Middleware(middleware, **kwargs)] if middleware else [])

    layers = ["+receive", "+root span", "+otel context", "+trace id header", "+exchange"]
    apps = {"bare": make(), "pass": make(Pass), "wrap": make(Wrap),
            "minimal": make(floor.FloorMiddleware),
            **{name: make(layered(i)) for i, name in enumerate(layers, start=1)},
            "routetrace": make(TracingMiddleware, config={"routes": []}),
            "bare POST": make(),
            "routetrace POST": make(TracingMiddleware, config={
                "experiment": "bench",
                "routes": [{"path": "/chat/{session}", "experiment": "chat"}]})}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def receive_post() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def loop(app: Any, n: int, post: bool) -> None:
        scope, recv = (POST_SCOPE, receive_post) if post else (SCOPE, receive)
        for _ in range(n):
            await app(dict(scope), recv, send)

    async def run() -> None:
        results: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(ROUNDS):
            for name, app in apps.items():
                post = name.endswith("POST")
                await loop(app, 500, post)
                started = time.perf_counter()
                await loop(app, 5000, post)
                results[name].append((time.perf_counter() - started) / 5000 * 1e6)
        for name, values in results.items():
            if name in ("bare", "bare POST"):
                bare = previous = min(values)
            best = min(values)
            print(f"{name:17s} best {best:6.2f}  median {sorted(values)[ROUNDS // 2]:6.2f}  "
                  f"({best - bare:+6.2f} over bare, {best - previous:+5.2f} over the row above)")
            previous = best

    asyncio.run(run())


if __name__ == "__main__":
    main()
