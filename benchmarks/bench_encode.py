"""The OTLP encoders alone, on records built from the benchmark's middleware traces.

    .venv/bin/python -m benchmarks.bench_encode -n 2000

``n`` mixed requests (``GET /hello`` and ``POST /chat/{i}`` with a JSON body, as
:mod:`benchmarks.inprocess` sends them) go through ``TracingMiddleware``; their finished traces
are held, built into records as the export worker builds them, then encoded in batches: OTLP
protobuf in both attribute styles (``json`` for collectors, ``native`` for the MLflow server)
and OTLP-JSON lines (the file backend). Prints one JSON line: CPU µs per trace (best of
``--rounds``) and the function calls per trace that ``cProfile`` counts for one round.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH = 100


def records(n: int) -> list[Any]:
    """``n`` request traces as the export worker builds them."""
    from benchmarks.inprocess import _loop
    from benchmarks.peers import setup
    from routetrace.core.build import record_trace
    from routetrace.core.tracer import get_tracer

    app = setup("routetrace", Path(tempfile.mkdtemp())).app
    held: list[Any] = []
    get_tracer().exporter.logger.put = held.append  # type: ignore[attr-defined]
    asyncio.run(_loop(app, n))
    return [record_trace(live, live.processors) for live in held]


def encoders() -> dict[str, Callable[[list[Any]], Any]]:
    from routetrace.backends.base import ExperimentInfo
    from routetrace.backends.jsonl_file import JsonlFileBackend
    from routetrace.backends.otlp_protobuf import encode_protobuf

    resource = {"service.name": "bench", "mlflow.experiment.id": "1",
                "mlflow.experiment.name": "web"}
    experiment = ExperimentInfo("1", "web")
    lines = JsonlFileBackend(Path(tempfile.mkdtemp()) / "traces.jsonl").encode_lines
    return {
        "protobuf_json": lambda b: encode_protobuf(b, resource=resource, style="json"),
        "protobuf_native": lambda b: encode_protobuf(b, resource=resource, style="native"),
        "otlp_json_lines": lambda b: lines(experiment, b),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--traces", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    built = records(args.traces)
    batches = [built[i : i + BATCH] for i in range(0, len(built), BATCH)]
    out: dict[str, Any] = {"traces": len(built), "spans": sum(len(r.spans) for r in built)}
    for name, encode in encoders().items():
        best = float("inf")
        for _ in range(args.rounds):
            start = time.process_time_ns()
            for batch in batches:
                encode(batch)
            best = min(best, time.process_time_ns() - start)
        profile = cProfile.Profile()
        profile.enable()
        for batch in batches:
            encode(batch)
        profile.disable()
        calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
        out[name] = {"us_per_trace": round(best / 1000 / len(built), 2),
                     "calls_per_trace": round(calls / len(built), 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
