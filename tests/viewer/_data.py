"""Traces with known shapes and timings, written straight into a store, for the CLI and viewer
tests (the export pipeline has its own tests; here the timings must be exact)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from routetrace.backends.base import Backend
from routetrace.core.destination import Experiment
from routetrace.core.model import (
    Span,
    SpanEvent,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
    format_trace_id,
)

MS = 1_000_000
HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned=1\"><script>alert('x')</script>"
HUGE = "x" * 100_000


@dataclass
class Filled:
    math: str  # OK, 4 spans: root > parse, compute > llm
    chat_error: str  # ERROR, 2 spans
    hostile: str  # OK, hostile strings and a huge input
    older: list[str]  # 5 old OK traces in math-agent, a day back


def make_trace(n: int, experiment_id: str, name: str, start_ms: int,
               spans: list[tuple[str, str, int | None, int, int, str]],
               *, state: str = "OK", request_preview: str | None = None,
               response_preview: str | None = None, inputs: object = None,
               tags: dict[str, str] | None = None) -> Trace:
    """``spans``: (name, type, parent index or None, start offset ms, duration ms, status)."""
    tid = format_trace_id(random.Random(n).getrandbits(128))
    t0 = start_ms * MS
    ids = [f"{n:08x}{i:08x}" for i in range(len(spans))]
    out = []
    for i, (sname, stype, parent, off, dur, status) in enumerate(spans):
        out.append(Span(
            trace_id=tid, span_id=ids[i], parent_id=None if parent is None else ids[parent],
            name=sname, span_type=stype, start_time_ns=t0 + off * MS,
            end_time_ns=t0 + (off + dur) * MS, status=SpanStatus(status),
            inputs=inputs if i == 0 else {"step": i}, outputs={"ok": status == "OK"},
            attributes={"http.route": name, "n": i},
            events=[SpanEvent("exception", t0 + off * MS,
                              {"exception.type": "RuntimeError", "exception.message": "boom"})]
            if status == "ERROR" else [],
        ))
    info = TraceInfo(
        trace_id=tid, experiment_id=experiment_id, request_time=start_ms,
        execution_duration=spans[0][4], state=state, request_preview=request_preview,
        response_preview=response_preview,
        tags={"mlflow.traceName": name, **(tags or {})}, trace_metadata={"service": "tests"},
    )
    return Trace(info, TraceData(out))


def fill_store(store: Backend) -> Filled:
    now = int(time.time() * 1000)
    math = store.resolve_experiment(Experiment(name="math-agent"))
    chat = store.resolve_experiment(Experiment(name="chat-agent"))
    t_math = make_trace(1, math.experiment_id, "POST /math/{op}", now - 3000, [
        ("POST /math/{op}", "UNKNOWN", None, 0, 120, "OK"),
        ("parse", "PARSER", 0, 5, 10, "OK"),
        ("compute", "TOOL", 0, 20, 90, "OK"),
        ("llm", "LLM", 2, 30, 60, "OK"),
    ], request_preview='{"op": "add", "a": 1, "b": 2}', response_preview='{"result": 3}',
        inputs={"op": "add", "a": 1, "b": 2}, tags={"route": "/math/{op}"})
    t_chat = make_trace(2, chat.experiment_id, "POST /chat/{id}", now - 2000, [
        ("POST /chat/{id}", "UNKNOWN", None, 0, 40, "ERROR"),
        ("agent", "AGENT", 0, 2, 30, "ERROR"),
    ], state="ERROR", request_preview='{"message": "hello"}', response_preview=None)
    t_hostile = make_trace(3, math.experiment_id, HOSTILE, now - 1000, [
        (HOSTILE, "UNKNOWN", None, 0, 5, "OK"),
    ], request_preview=HOSTILE + " O'Brien " + HUGE, response_preview="fine",
        inputs={"body": HUGE, "html": HOSTILE})
    older = [
        make_trace(10 + i, math.experiment_id, "POST /math/{op}", now - 86_400_000 - i * 1000,
                   [("POST /math/{op}", "UNKNOWN", None, 0, 7, "OK")],
                   request_preview=f'{{"old": {i}}}')
        for i in range(5)
    ]
    store.write_traces(math, [t_math, t_hostile, *older])
    store.write_traces(chat, [t_chat])
    return Filled(t_math.info.trace_id, t_chat.info.trace_id, t_hostile.info.trace_id,
                  [t.info.trace_id for t in older])
