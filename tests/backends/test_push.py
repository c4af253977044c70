"""``push()``: a local store (and its spool) into a real MLflow server, exactly once."""

from __future__ import annotations

import time
import uuid

import pytest

import routetrace
from routetrace.backends import backend_for_uri
from routetrace.backends.local import LocalStore
from routetrace.backends.push import push
from routetrace.core.destination import Experiment
from routetrace.core.settings import load_settings
from routetrace.export import spool

pytestmark = pytest.mark.mlflow_server


def _fill(reset_tracer, store_dir, experiment: str, n: int) -> None:
    reset_tracer(MLFLOW_TRACKING_URI=str(store_dir))
    routetrace.set_experiment(experiment)

    @routetrace.trace
    def handler(i: int) -> int:
        with routetrace.start_span("step"):
            pass
        return i

    for i in range(n):
        handler(i)
    assert routetrace.flush(timeout=60)


def _server_ids(url: str, experiment: str) -> list[str]:
    backend = backend_for_uri(url, load_settings({}))
    exp_id = backend.resolve_experiment(Experiment(name=experiment)).experiment_id
    return [t.info.trace_id for t in backend.search_traces(
        experiment_ids=[exp_id], max_results=10_000, include_spans=False)]


def test_push_1000_traces_then_again_adds_none(mlflow_server, reset_tracer, tmp_path) -> None:
    exp = f"push-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "mlruns"
    _fill(reset_tracer, source, exp, 1000)
    calls: list[tuple[int, int]] = []
    started = time.monotonic()
    first = push(source, mlflow_server.url, progress=lambda d, t: calls.append((d, t)))
    elapsed = time.monotonic() - started
    assert first.ok
    assert first.pushed == 1000
    assert calls[0] == (0, 1000)
    assert calls[-1] == (1000, 1000)
    ids = _server_ids(mlflow_server.url, exp)
    assert len(ids) == len(set(ids)) == 1000
    trace = backend_for_uri(mlflow_server.url, load_settings({})).get_trace(ids[0])
    assert trace is not None
    assert {s.name for s in trace.data.spans} == {"handler", "step"}
    print(f"\npush: 1000 traces in {elapsed:.1f}s ({1000 / elapsed:.0f} traces/s)")

    second = push(source, mlflow_server.url)
    assert second.pushed == 0
    assert second.skipped == 1000
    assert len(_server_ids(mlflow_server.url, exp)) == 1000


def test_interrupted_push_resumes_exactly_once(mlflow_server, reset_tracer, tmp_path) -> None:
    exp = f"push-int-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "mlruns"
    _fill(reset_tracer, source, exp, 450)

    def interrupt(done: int, total: int) -> None:
        if done >= 200:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push(source, mlflow_server.url, experiment=exp, progress=interrupt)
    partial = _server_ids(mlflow_server.url, exp)
    assert 0 < len(partial) < 450
    again = push(source, mlflow_server.url, experiment=exp)
    assert again.skipped == len(partial)
    assert again.pushed == 450 - len(partial)
    ids = _server_ids(mlflow_server.url, exp)
    assert len(ids) == len(set(ids)) == 450


def test_push_includes_spool_and_since(mlflow_server, reset_tracer, tmp_path) -> None:
    exp = f"push-spool-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "mlruns"
    _fill(reset_tracer, source, exp, 3)
    store = LocalStore.from_uri(str(source))
    traces = store.search_traces(max_results=10)
    # Spool copies of two traces plus one the store does not have (a failed server write).
    extra = LocalStore.from_uri(str(tmp_path / "other"))
    _fill(reset_tracer, tmp_path / "other", exp, 1)
    (lost,) = extra.search_traces(max_results=10)
    spool.spool_batch(store.spool_dir / "mlflow-host_5000", "http://host:5000",
                      Experiment(name=exp), [lost, *traces[:2]])
    result = push(source, mlflow_server.url)
    assert result.ok
    assert result.spool_files == 1
    assert result.pushed == 4  # 3 stored + the lost one; the 2 copies are skipped
    assert not list((store.spool_dir / "mlflow-host_5000").glob("*.jsonl"))
    assert len(set(_server_ids(mlflow_server.url, exp))) == 4

    future = push(source, mlflow_server.url, since_ms=int(time.time() * 1000) + 10**6)
    assert future.total == 0


def test_push_rejects_a_non_store(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a routetrace local store"):
        push(tmp_path / "nothing", str(tmp_path / "target"))
