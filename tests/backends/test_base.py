"""The contract every backend keeps, asked of each real backend."""

from __future__ import annotations

import time

import pytest

from routetrace import Experiment
from routetrace.backends import backend_for_uri
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
