"""The floor: the least a root-span-per-request middleware in Python does.

Random trace and span ids, the clock at start and end, the record set in a ``ContextVar`` for
the request's code, one compiled regex matching the route, the response status captured from
``http.response.start``, and the finished record appended to a bounded deque at the last body
chunk: the hand-off any exporter would start from. Nothing is exported, nothing kept beyond
the deque. ``benchmarks.peers`` serves it as the ``floor`` configuration and
``benchmarks.bench_variants`` builds routetrace's request path up from it, so both measure
the same code.
"""

from __future__ import annotations

import collections
import contextvars
import random
import re
import time
from typing import Any

# The benchmark app's two routes, as one alternation: one match per request.
ROUTES = r"/hello|/chat/[^/]+"
# Bounded, so the server's memory stays flat however long the load runs: a full deque drops
# its oldest record, the way an exporter would free one it had sent.
KEPT = 10_000

CURRENT: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "benchmarks_floor_span", default=None)


class FloorMiddleware:
    """A root span per HTTP request as a five-item list: trace id, span id, start, status, end.

    ``finished`` receives each ended record (a new bounded deque when not given).
    """

    def __init__(self, app: Any, finished: collections.deque[list[Any]] | None = None) -> None:
        self.app = app
        self.route = re.compile(ROUTES)
        self.finished = collections.deque(maxlen=KEPT) if finished is None else finished

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.route.fullmatch(scope["path"])
        record: list[Any] = [random.getrandbits(128), random.getrandbits(64), time.time_ns(),
                             None, None]
        token = CURRENT.set(record)
        finished = self.finished

        def wrapped(message: Any) -> Any:
            if message["type"] == "http.response.start":
                record[3] = message["status"]
            elif not message.get("more_body"):
                record[4] = time.time_ns()
                finished.append(record)
            return send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            CURRENT.reset(token)
