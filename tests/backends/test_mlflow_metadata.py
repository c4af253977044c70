"""The metadata MLflow's SDK computes at export, computed by routetrace the same way: checked
against MLflow's own functions on the same spans."""

from __future__ import annotations

import json

import pytest

import routetrace
from routetrace.backends import mlflow_metadata
from tests.conftest import traces_of

mlflow = pytest.importorskip("mlflow")


def _trace() -> routetrace.Trace:
    @routetrace.trace(span_type="AGENT")
    def agent(question: str) -> dict:
        with routetrace.start_span("retrieve", span_type="RETRIEVER") as span:
            span.set_inputs({"query": question * 40})
            span.set_outputs([{"doc": "d1", "score": 0.5}])
            span.add_event(routetrace.SpanEvent("hit", attributes={"n": 1}))
        return {"answer": "é" * 300}

    agent("what is 2+2")
    (trace,) = traces_of()
    return trace


def test_span_sizes_are_the_bytes_of_mlflows_own_span_json() -> None:
    from mlflow.entities import Span as MlflowSpan
    from mlflow.tracing.utils import TraceJSONEncoder

    trace = _trace()
    for span in trace.data.spans:
        ours = mlflow_metadata._mlflow_span_dict(span, trace)
        theirs = MlflowSpan.from_dict(json.loads(json.dumps(ours))).to_dict()
        assert json.dumps(ours, default=str) == json.dumps(theirs, cls=TraceJSONEncoder)


def test_size_stats_use_mlflows_percentiles() -> None:
    from mlflow.tracing.utils import _calculate_percentile

    for data in ([5], [1, 9], [3, 4, 10, 200], list(range(1, 12))):
        for q in (0.25, 0.5, 0.75):
            assert mlflow_metadata._percentile(data, q) == _calculate_percentile(data, q)
    trace = _trace()
    meta = mlflow_metadata.size_metadata(trace, {"trace_id": trace.info.trace_id})
    stats = json.loads(meta["mlflow.trace.sizeStats"])
    assert stats["num_spans"] == 2 and str(stats["total_size_bytes"]) == meta[
        "mlflow.trace.sizeBytes"]
    assert stats["max"] >= stats["p75"] >= stats["p50"] >= stats["p25"] > 0


def test_trace_inputs_and_outputs_are_cut_as_mlflow_cuts_them() -> None:
    meta = mlflow_metadata.io_metadata(_trace())
    assert meta["mlflow.traceInputs"] == '{"question": "what is 2+2"}'
    outputs = meta["mlflow.traceOutputs"]
    assert len(outputs) == 250 and outputs.endswith("...")
    assert outputs.startswith('{"answer": "éé')  # not ASCII-escaped, as MLflow's attribute
