"""Lifespan shutdown settles the export before the server is told the app is done."""

from __future__ import annotations

import asyncio

from routetrace.core import tracer as tracer_mod
from routetrace.export import lifecycle
from routetrace.middleware.guard import report
from routetrace.middleware.types import Message, Send

__all__ = ["LifespanSend"]


class LifespanSend:
    """Settle the export (flush, spool the rest, leave the counts) before telling the server
    the app has shut down: under uvicorn that is the last chance, SIGTERM follows."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _settle()
        await self._send(message)


async def _settle() -> None:
    if tracer_mod.peek_tracer() is None:
        return
    try:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): a short blocking settle at shutdown
            lifecycle.settle("lifespan shutdown")
            return
        await loop.run_in_executor(None, lifecycle.settle, "lifespan shutdown")
    except Exception:
        report("settling the export at lifespan shutdown")
