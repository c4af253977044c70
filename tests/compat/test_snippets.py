"""MLflow Tracing's documented examples run unchanged on routetrace (``import routetrace as
mlflow``), on the local store and against a real ``mlflow server``, and read back the same as
the traces MLflow's own SDK makes from the same snippet.

Every difference the comparison allows is listed, with its reason, in docs/mlflow-compat.md.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import routetrace
from tests.compat.compare import comparable, run_snippet
from tests.compat.snippets import SNIPPETS, Snippet, for_mlflow

_IDS = [s.id for s in SNIPPETS]
# What MLflow's SDK computes and writes when it exports (routetrace's server backend writes
# them too; its local store does not: docs/mlflow-compat.md, "Differences"), and what the
# MLflow server adds to every trace it stores (infoFinalized, the spansLocation tag).
_EXPORT_METADATA = frozenset({
    "mlflow.traceInputs", "mlflow.traceOutputs", "mlflow.trace.sizeStats",
    "mlflow.trace.sizeBytes", "mlflow.user", "mlflow.source.name", "mlflow.source.type",
    "mlflow.trace.infoFinalized",
})
_SERVER_TAGS = frozenset({"mlflow.trace.spansLocation"})


def _experiment(snippet: Snippet, side: str) -> str:
    return f"compat-{snippet.id}-{side}-{uuid.uuid4().hex[:8]}"


def _routetrace_traces(snippet: Snippet) -> list[routetrace.Trace]:
    routetrace.set_experiment(_experiment(snippet, "rt"))
    run_snippet(snippet.source)
    assert routetrace.flush(timeout=60)
    # No experiment given: the active one, as MLflow searches.
    traces = routetrace.search_traces(return_type="list")
    assert len(traces) == snippet.traces
    return [routetrace.get_trace(t.info.trace_id) for t in traces]


def _mlflow_traces(mlflow: Any, url: str, snippet: Snippet) -> list[Any]:
    mlflow.set_tracking_uri(url)
    exp = mlflow.set_experiment(_experiment(snippet, "mlflow"))
    run_snippet(for_mlflow(snippet.source))
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[exp.experiment_id], return_type="list")
    assert len(traces) == snippet.traces
    return [mlflow.get_trace(t.info.trace_id) for t in traces]


def _by_name(traces: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
    return sorted((comparable(t, **kwargs) for t in traces),
                  key=lambda c: (c["spans"][0][0] if c["spans"] else "", str(c)))


def _assert_same(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Field by field, so a failure names the field that differs."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for field in b:
            assert (field, a[field]) == (field, b[field])


@pytest.mark.parametrize("snippet", SNIPPETS, ids=_IDS)
def test_snippet_runs_unchanged_on_the_local_store(snippet: Snippet) -> None:
    _routetrace_traces(snippet)


@pytest.mark.mlflow_server
@pytest.mark.parametrize("snippet", SNIPPETS, ids=_IDS)
def test_snippet_reads_back_as_mlflow_wrote_it_on_a_real_server(
    snippet: Snippet, mlflow_tracking
) -> None:
    mlflow = pytest.importorskip("mlflow")
    ours = _routetrace_traces(snippet)
    theirs = _mlflow_traces(mlflow, mlflow_tracking.url, snippet)
    _assert_same(_by_name(ours), _by_name(theirs))


@pytest.mark.mlflow_server
@pytest.mark.parametrize("snippet", SNIPPETS, ids=_IDS)
def test_snippet_on_the_local_store_reads_back_as_mlflow_wrote_it(
    snippet: Snippet, mlflow_server, tmp_path
) -> None:
    mlflow = pytest.importorskip("mlflow")
    ours = _routetrace_traces(snippet)
    theirs = _mlflow_traces(mlflow, mlflow_server.url, snippet)
    _assert_same(_by_name(ours, unset_is_ok=True),
                 _by_name(theirs, ignore_metadata=_EXPORT_METADATA, ignore_tags=_SERVER_TAGS))
