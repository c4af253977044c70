"""The OTLP-JSON lines file backend: appended through aiofiles, rotated by size."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import routetrace
from routetrace.backends import backend_for_uri
from routetrace.backends.jsonl_file import DEFAULT_MAX_BYTES, JsonlFileBackend
from routetrace.core.settings import load_settings

pytest.importorskip("aiofiles")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_traces_appended_as_otlp_json_lines(reset_tracer, tmp_path) -> None:
    path = tmp_path / "out" / "traces.jsonl"
    reset_tracer(MLFLOW_TRACKING_URI=path.as_uri(), OTEL_SERVICE_NAME="svc")
    routetrace.set_experiment("chat-agent")

    @routetrace.trace
    def handler(i: int) -> int:
        with routetrace.start_span("inner"):
            pass
        return i

    for i in range(3):
        handler(i)
    assert routetrace.flush(timeout=30)
    lines = _lines(path)
    assert len(lines) == 3
    first = lines[0]["resourceSpans"][0]
    resource = {a["key"]: a["value"]["stringValue"] for a in first["resource"]["attributes"]}
    assert resource == {"service.name": "svc", "mlflow.experiment.id": "chat-agent",
                        "mlflow.experiment.name": "chat-agent"}
    spans = first["scopeSpans"][0]["spans"]
    assert {s["name"] for s in spans} == {"handler", "inner"}
    assert all(len(s["traceId"]) == 32 for s in spans)


def test_rotation_keeps_n_files(tmp_path) -> None:
    from tests.backends.test_otlp import _sample_trace

    path = tmp_path / "t.jsonl"
    backend = JsonlFileBackend.from_uri(f"{path.as_uri()}?max_bytes=3000&keep=2",
                                        load_settings({}))
    info = backend.resolve_experiment(routetrace.Experiment(name="e"))
    line_size = len(backend.encode_lines(info, [_sample_trace()]))
    assert line_size < 3000
    for _ in range(20):
        backend.write_traces(info, [_sample_trace()])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 3000
        assert all(line["resourceSpans"] for line in _lines(p))  # whole lines only
    backend.close()


def test_each_worker_thread_uses_its_own_loop(tmp_path) -> None:
    from tests.backends.test_otlp import _sample_trace

    backend = JsonlFileBackend(tmp_path / "t.jsonl", load_settings({}))
    info = backend.resolve_experiment(routetrace.Experiment(name="e"))
    threads = [threading.Thread(target=backend.write_traces, args=(info, [_sample_trace()]))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_lines(tmp_path / "t.jsonl")) == 4


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("?max_bytes=lots", "max_bytes='lots' is not an integer", id="bad number"),
        pytest.param("?rotate=1", "unknown option 'rotate'", id="unknown option"),
        pytest.param("?max_bytes=0", "max_bytes must be a positive", id="zero"),
    ],
)
def test_bad_options(tmp_path, query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JsonlFileBackend.from_uri((tmp_path / "t.jsonl").as_uri() + query)


def test_uri_maps_to_file_backend(tmp_path) -> None:
    backend = backend_for_uri((tmp_path / "x.jsonl").as_uri(), load_settings({}))
    assert isinstance(backend, JsonlFileBackend)
    assert backend.max_bytes == DEFAULT_MAX_BYTES
