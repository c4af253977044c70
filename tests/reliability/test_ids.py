"""Trace and span ids must not depend on the app's use of the ``random`` module.

Found by the hostile-input test: hypothesis seeds the global ``random`` for each example, and
the traces of different requests came out with the same ids and were merged into one in the
store (50 stored of 466). An app that seeds ``random`` for reproducible sampling (``random.seed``
in a handler, ``transformers.set_seed``...) did the same in production.
"""

from __future__ import annotations

import asyncio
import random

import routetrace
from routetrace.middleware import TracingMiddleware
from tests.conftest import traces_of
from tests.middleware.conftest import drive, make_scope

N = 50


async def seeding_app(scope, receive, send) -> None:
    random.seed(42)  # the handler wants reproducible sampling
    with routetrace.start_span("sample") as span:
        span.set_outputs(random.random())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_app_seeding_random_does_not_collide_trace_ids() -> None:
    traced = TracingMiddleware(seeding_app, config={"experiment": "seeded"})

    async def main() -> None:
        for i in range(N):
            random.seed(42)  # ...and so does whatever ran before the request
            await drive(traced, make_scope("GET", f"/item/{i}"))

    asyncio.run(main())
    traces = traces_of("seeded")
    assert len(traces) == N
    assert len({t.info.trace_id for t in traces}) == N
    span_ids = [s.span_id for t in traces for s in t.data.spans]
    assert len(set(span_ids)) == 2 * N
    assert sorted(t.root_span.inputs["path"] for t in traces) == sorted(
        f"/item/{i}" for i in range(N))
