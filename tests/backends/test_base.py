"""The contract every backend keeps, asked of each real backend."""

from __future__ import annotations

import time

import pytest

from routetrace import Experiment
from routetrace.backends import backend_for_uri
from routetrace.backends.base import (
    Backend,
    ExperimentInfo,
    LabelledExperiments,
    TraceQuery,
    TraceSelection,
)
from routetrace.core.model import Trace
from tests.viewer._data import make_trace


@pytest.mark.parametrize("where", [
    pytest.param("{tmp}/store", id="directory"),
    pytest.param("sqlite:///{tmp}/traces.db", id="sqlite file"),
])
def test_a_local_store_exists_only_once_something_is_written(tmp_path, tracer, where):
    store = backend_for_uri(where.format(tmp=tmp_path), tracer.settings)
    assert store.exists() is False
    assert store.exists() is False  # asking created nothing
    assert list(tmp_path.iterdir()) == []
    exp = store.resolve_experiment(Experiment(name="first"))
    store.write_traces(exp, [make_trace(1, exp.experiment_id, "GET /", int(time.time() * 1000),
                                        [("GET /", "UNKNOWN", None, 0, 3, "OK")])])
    assert store.exists() is True


@pytest.mark.parametrize("uri", [
    pytest.param("http://127.0.0.1:9", id="mlflow server"),
    pytest.param("otlp+http://127.0.0.1:9", id="otlp collector"),
    pytest.param("file://{tmp}/traces.jsonl", id="jsonl file"),
])
def test_sinks_with_no_local_store_to_find_say_they_exist_without_touching_anything(
        tmp_path, tracer, uri):
    backend = backend_for_uri(uri.format(tmp=tmp_path), tracer.settings)
    assert backend.exists() is True
    assert list(tmp_path.iterdir()) == []


class AnsweringBackend(LabelledExperiments, Backend):
    """Implements only what a backend must: what it is asked arrives checked and named."""

    uri = "answering:"

    def __init__(self) -> None:
        self._experiments = {}
        self.asked: list[TraceQuery | TraceSelection] = []

    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        return None

    def _search_traces(self, query: TraceQuery) -> list[Trace]:
        self.asked.append(query)
        return []

    def _delete_traces(self, selection: TraceSelection) -> int:
        self.asked.append(selection)
        return 7


def test_a_backend_implements_search_and_delete_once_and_gets_its_arguments_checked():
    backend = AnsweringBackend()
    with pytest.raises(ValueError, match="max_results must be a positive integer, not 0"):
        backend.search_traces(max_results=0)
    with pytest.raises(ValueError, match="not both"):
        backend.delete_traces(experiment_id="1", max_traces=2, trace_ids=["tr-" + "a" * 32])
    with pytest.raises(ValueError, match="refusing to delete a whole experiment"):
        backend.delete_traces(experiment_id="1")
    assert backend.asked == []
    assert backend.search_traces(experiment_ids=["1"], run_id="r", max_results=5) == []
    assert backend.delete_traces(experiment_id="1", max_traces=2) == 7
    assert backend.asked == [
        TraceQuery(experiment_ids=["1"], filter_string=None, run_id="r", max_results=5,
                   order_by=None, include_spans=True, offset=0),
        TraceSelection(experiment_id="1", max_timestamp_millis=None, max_traces=2,
                       trace_ids=None),
    ]


@pytest.mark.parametrize("uri", [
    pytest.param("{tmp}/store", id="local store"),
    pytest.param("http://127.0.0.1:9", id="mlflow server (nothing listening)"),
])
def test_every_searchable_backend_refuses_bad_arguments_before_touching_its_store(
        tmp_path, tracer, uri):
    backend = backend_for_uri(uri.format(tmp=tmp_path), tracer.settings)
    with pytest.raises(ValueError, match="max_results must be a positive integer, not True"):
        backend.search_traces(max_results=True)
    with pytest.raises(ValueError, match="max_traces must be a positive integer, not 0"):
        backend.delete_traces(experiment_id="0", max_traces=0)
    assert list(tmp_path.iterdir()) == []
