"""A FastAPI service traced by routetrace: each endpoint's traces in its own experiment.

    cd examples && uvicorn fastapi_app:app --port 8000
    curl -X POST localhost:8000/math/add -H 'content-type: application/json' -d '{"a": 2, "b": 3}'
    curl -N -X POST localhost:8000/chat/42 -H 'content-type: application/json' \
         -d '{"message": "hello"}'
    routetrace traces list --experiment math-agent

The route table is ``routetrace.toml`` next to this file (or ``ROUTETRACE_CONFIG``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

import routetrace
from routetrace import SpanType
from routetrace.middleware import TracingMiddleware

CONFIG = os.environ.get("ROUTETRACE_CONFIG") or str(Path(__file__).with_name("routetrace.toml"))

app = FastAPI(title="routetrace example")
app.add_middleware(TracingMiddleware, config=CONFIG)


class Operands(BaseModel):
    a: float
    b: float


class ChatRequest(BaseModel):
    message: str


# -- math: @routetrace.trace helpers become child spans of the request's root span --------
@routetrace.trace(span_type=SpanType.PARSER)
def parse_op(op: str) -> str:
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}; try one of {sorted(OPERATIONS)}")
    return op


@routetrace.trace(span_type=SpanType.TOOL)
def compute(op: str, a: float, b: float) -> float:
    return OPERATIONS[op](a, b)


OPERATIONS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@app.post("/math/{op}")
async def math(op: str, operands: Operands) -> dict[str, float | str]:
    try:
        result = compute(parse_op(op), operands.a, operands.b)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except ZeroDivisionError:
        raise HTTPException(status_code=422, detail="division by zero") from None
    return {"op": op, "result": result}


# -- chat: a streamed answer; spans made with start_span while the stream runs -------------
@routetrace.trace(span_type=SpanType.RETRIEVER)
def retrieve(query: str) -> list[str]:
    return [f"doc about {word}" for word in query.split()[:3]]


async def answer(message: str) -> AsyncIterator[str]:
    docs = retrieve(message)
    with routetrace.start_span("generate", span_type=SpanType.LLM) as span:
        span.set_inputs({"message": message, "context": docs})
        words = f"You said: {message}. I found {len(docs)} documents.".split()
        for word in words:
            await asyncio.sleep(0.01)  # a model producing tokens
            yield f"data: {word}\n\n"
        span.set_outputs(" ".join(words))
    yield "data: [DONE]\n\n"


@app.post("/chat/{conversation}")
async def chat(conversation: str, request: ChatRequest) -> StreamingResponse:
    routetrace.update_current_trace(tags={"conversation": conversation})
    return StreamingResponse(answer(request.message), media_type="text/event-stream")


# -- the rest ----------------------------------------------------------------------------
@app.get("/slow")
async def slow() -> dict[str, str]:
    """Runs past the route's timeout_seconds: the watchdog aborts its trace with ERROR."""
    await asyncio.sleep(1.6)
    return {"status": "finally done"}


@app.get("/error")
async def error() -> None:
    raise RuntimeError("this endpoint always fails (its trace is ERROR, with the exception)")


@app.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok"  # excluded in routetrace.toml: never traced
