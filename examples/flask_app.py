"""A Flask service traced by routetrace, sharing ``routetrace.toml`` with the FastAPI example.

    cd examples && flask --app flask_app run --port 8001
    curl -X POST localhost:8001/math/add -H 'content-type: application/json' -d '{"a": 2, "b": 3}'
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request, stream_with_context

import routetrace
from routetrace import SpanType
from routetrace.middleware import WSGITracingMiddleware

CONFIG = os.environ.get("ROUTETRACE_CONFIG") or str(Path(__file__).with_name("routetrace.toml"))

app = Flask(__name__)
app.wsgi_app = WSGITracingMiddleware(app.wsgi_app, config=CONFIG)  # type: ignore[method-assign]

OPERATIONS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@routetrace.trace(span_type=SpanType.TOOL)
def compute(op: str, a: float, b: float) -> float:
    return OPERATIONS[op](a, b)


@app.post("/math/<op>")
def math(op: str) -> Any:
    if op not in OPERATIONS:
        abort(404)
    body = request.get_json(force=True)
    try:
        return jsonify(op=op, result=compute(op, float(body["a"]), float(body["b"])))
    except ZeroDivisionError:
        return jsonify(detail="division by zero"), 422


@app.post("/chat/<conversation>")
def chat(conversation: str) -> Response:
    message = (request.get_json(force=True) or {}).get("message", "")

    def stream() -> Iterator[str]:
        # The request's trace is current while the server iterates the body.
        with routetrace.start_span("generate", span_type=SpanType.LLM) as span:
            span.set_inputs({"message": message})
            for word in f"You said: {message}".split():
                yield f"data: {word}\n\n"
        yield "data: [DONE]\n\n"

    return Response(stream_with_context(stream()), mimetype="text/event-stream")


@app.get("/slow")
def slow() -> dict[str, str]:
    time.sleep(1.6)  # past the route's timeout_seconds: the watchdog aborts the trace
    return {"status": "finally done"}


@app.get("/error")
def error() -> None:
    raise RuntimeError("this endpoint always fails")


@app.get("/healthz")
def healthz() -> str:
    return "ok"
