"""The MLflow server backend against a real ``mlflow server`` on loopback.

MLflow's own client reads back what routetrace wrote; the same function traced by MLflow's SDK
and by routetrace is compared field by field as MLflow's client reads them.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import routetrace
from routetrace import SpanType
from routetrace.backends import BackendError, backend_for_uri
from routetrace.backends.mlflow_server import MlflowServerBackend
from routetrace.core.destination import Experiment
from routetrace.core.settings import load_settings
from tests.fixtures.servers import free_port, loopback_http_server, wait_until

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.mlflow_server


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _agent(question: str, fail: bool = False) -> dict[str, Any]:
    """The handler both SDKs trace: a retriever, a tool and an LLM call under a root."""
    return {"answer": question.upper()}


def _traced_by_routetrace(question: str) -> dict[str, Any]:
    @routetrace.trace(name="agent", span_type=SpanType.AGENT)
    def agent(question: str) -> dict[str, Any]:
        with routetrace.start_span("retrieve", span_type=SpanType.RETRIEVER) as span:
            span.set_inputs({"query": question})
            span.set_outputs([{"doc": "d1", "score": 0.5}])
            span.set_attribute("k", 3)
        with routetrace.start_span("llm", span_type=SpanType.LLM) as span:
            span.set_inputs({"messages": [{"role": "user", "content": question}]})
            span.set_outputs("ok")
        routetrace.update_current_trace(tags={"team": "a"}, metadata={"tenant": "t1"})
        return {"answer": question.upper()}

    return agent(question)


def _traced_by_mlflow(question: str) -> dict[str, Any]:
    @mlflow.trace(name="agent", span_type="AGENT")
    def agent(question: str) -> dict[str, Any]:
        with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
            span.set_inputs({"query": question})
            span.set_outputs([{"doc": "d1", "score": 0.5}])
            span.set_attribute("k", 3)
        with mlflow.start_span("llm", span_type="LLM") as span:
            span.set_inputs({"messages": [{"role": "user", "content": question}]})
            span.set_outputs("ok")
        mlflow.update_current_trace(tags={"team": "a"}, metadata={"tenant": "t1"})
        return {"answer": question.upper()}

    return agent(question)


@pytest.fixture
def client(mlflow_server) -> Any:
    mlflow.set_tracking_uri(mlflow_server.url)
    return mlflow.MlflowClient(mlflow_server.url)


def _experiment_id(url: str, name: str) -> str:
    exp = mlflow.MlflowClient(url).get_experiment_by_name(name)
    assert exp is not None, f"experiment {name} missing on the server"
    return exp.experiment_id


def test_traces_found_by_mlflow_client(mlflow_tracking, client) -> None:
    exp = _name("rt-read")
    routetrace.set_experiment(exp)
    _traced_by_routetrace("what is 2+2")

    @routetrace.trace(span_type=SpanType.CHAIN)
    def failing() -> None:
        routetrace.update_current_trace(request_preview="custom request",
                                        response_preview="custom response")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing()
    assert routetrace.flush(timeout=60)

    exp_id = _experiment_id(mlflow_tracking.url, exp)
    traces = mlflow.search_traces(locations=[exp_id], return_type="list")
    assert len(traces) == 2
    by_name = {t.info.tags["mlflow.traceName"]: t for t in traces}

    ok = mlflow.get_trace(by_name["agent"].info.trace_id)
    assert ok.info.state.value == "OK"
    assert ok.info.experiment_id == exp_id
    assert ok.info.tags["team"] == "a"
    assert ok.info.trace_metadata["tenant"] == "t1"
    assert ok.info.request_preview == '{"question": "what is 2+2"}'
    assert ok.info.response_preview == '{"answer": "WHAT IS 2+2"}'
    assert ok.info.execution_duration is not None
    spans = {s.name: s for s in ok.data.spans}
    assert set(spans) == {"agent", "retrieve", "llm"}
    root = spans["agent"]
    assert root.parent_id is None
    assert spans["retrieve"].parent_id == root.span_id == spans["llm"].parent_id
    assert root.span_type == "AGENT"
    assert spans["retrieve"].span_type == "RETRIEVER"
    assert spans["llm"].span_type == "LLM"
    assert root.inputs == {"question": "what is 2+2"}
    assert root.outputs == {"answer": "WHAT IS 2+2"}
    assert spans["retrieve"].outputs == [{"doc": "d1", "score": 0.5}]
    assert spans["retrieve"].attributes["k"] == 3
    assert spans["llm"].inputs == {"messages": [{"role": "user", "content": "what is 2+2"}]}
    assert spans["llm"].outputs == "ok"
    assert all(s.status.status_code.value == "OK" for s in ok.data.spans)
    # The span attributes carry no routetrace bookkeeping a UI user would see.
    assert not [k for k in root.attributes if k.startswith("mlflow.traceTag.")]

    err = mlflow.get_trace(by_name["failing"].info.trace_id)
    assert err.info.state.value == "ERROR"
    assert err.info.request_preview == "custom request"
    assert err.info.response_preview == "custom response"
    (span,) = err.data.spans
    assert span.status.status_code.value == "ERROR"
    assert span.span_type == "CHAIN"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.message"] == "boom"


def test_run_link(mlflow_tracking, client) -> None:
    exp = _name("rt-run")
    routetrace.set_experiment(exp)
    with routetrace.start_run(run_name="r1") as run:
        _traced_by_routetrace("in a run")
    assert routetrace.flush(timeout=60)
    server_run = client.get_run(run.info.run_id)
    assert server_run.info.run_name == "r1"
    assert server_run.info.status == "FINISHED"
    (trace,) = mlflow.search_traces(locations=[_experiment_id(mlflow_tracking.url, exp)],
                                    run_id=run.info.run_id, return_type="list")
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run.info.run_id
    (found,) = routetrace.search_traces(exp, run_id=run.info.run_id, return_type="list")
    assert found.info.run_id == run.info.run_id


def _comparable(trace: Any) -> dict[str, Any]:
    info = trace.info
    volatile_meta = {"mlflow.source.name"}
    return {
        "state": info.state.value,
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
        "tags": {k: v for k, v in info.tags.items() if k != "mlflow.artifactLocation"},
        "metadata_keys": sorted(k for k in info.trace_metadata
                                if k not in volatile_meta
                                and not k.startswith("mlflow.source.git")),
        "metadata": {k: info.trace_metadata[k] for k in ("tenant", "mlflow.trace_schema.version",
                                                         "mlflow.user", "mlflow.source.type",
                                                         "mlflow.traceInputs",
                                                         "mlflow.traceOutputs")},
        "size_stat_keys": sorted(json.loads(info.trace_metadata["mlflow.trace.sizeStats"])),
        "spans": sorted(
            (s.name, s.span_type, json.dumps(s.inputs, sort_keys=True),
             json.dumps(s.outputs, sort_keys=True), s.status.status_code.value,
             None if s.parent_id is None else "child",
             json.dumps({k: v for k, v in s.attributes.items()
                         if not k.startswith("mlflow.")}, sort_keys=True))
            for s in trace.data.spans
        ),
    }


def test_same_function_sdk_vs_routetrace(mlflow_tracking, client) -> None:
    exp = _name("rt-compare")
    mlflow.set_experiment(exp)
    _traced_by_mlflow("same question")
    mlflow.flush_trace_async_logging()
    routetrace.set_experiment(exp)
    _traced_by_routetrace("same question")
    our_id = routetrace.get_last_active_trace_id()
    assert routetrace.flush(timeout=60)

    exp_id = _experiment_id(mlflow_tracking.url, exp)
    traces = wait_until(
        lambda: (t := mlflow.search_traces(locations=[exp_id], return_type="list"))
        and len(t) == 2 and t,
        30, what="both traces on the server",
    )
    full = [mlflow.get_trace(t.info.trace_id) for t in traces]
    ours = [t for t in full if t.info.trace_id == our_id]
    theirs = [t for t in full if t not in ours]
    assert len(ours) == 1
    assert len(theirs) == 1
    a, b = _comparable(theirs[0]), _comparable(ours[0])
    # Known, documented differences (docs/mlflow-compat.md): MLflow's SDK also writes git
    # metadata and the mlflow.spanLogLevel span attribute.
    for side in (a, b):
        side["metadata_keys"] = [k for k in side["metadata_keys"]
                                 if k not in ("mlflow.trace.infoFinalized",)]
    assert a == b


def test_search_get_delete_same_shape_as_local_store(mlflow_tracking, reset_tracer,
                                                     tmp_path) -> None:
    exp = _name("rt-shape")
    routetrace.set_experiment(exp)
    for i in range(3):
        _traced_by_routetrace(f"q{i}")
    assert routetrace.flush(timeout=60)
    remote = routetrace.search_traces(exp, return_type="list")
    assert len(remote) == 3
    remote_one = routetrace.get_trace(remote[0].info.trace_id)
    assert routetrace.get_trace("tr-" + "0" * 32) is None

    reset_tracer(MLFLOW_TRACKING_URI=str(tmp_path / "local"))
    routetrace.set_experiment(exp)
    _traced_by_routetrace("q0")
    assert routetrace.flush(timeout=30)
    (local,) = routetrace.search_traces(exp, return_type="list")

    def shape(trace: routetrace.Trace) -> dict[str, Any]:
        d = trace.to_dict()
        return {
            "info": sorted(d["info"]),
            "types": {k: type(v).__name__ for k, v in d["info"].items()
                      if k not in ("request_preview", "response_preview")},
            "span": sorted(d["data"]["spans"][0]),
            "spans": sorted((s["name"], s["span_type"], s["parent_id"] is None)
                            for s in d["data"]["spans"]),
            "user_tags": {k: v for k, v in d["info"]["tags"].items()
                          if not k.startswith("mlflow.")},
            "io": sorted((s["name"], json.dumps(s["inputs"]), json.dumps(s["outputs"]),
                          json.dumps(s["attributes"])) for s in d["data"]["spans"]),
        }

    local_remote = next(t for t in remote if t.info.request_preview == local.info.request_preview)
    assert shape(local_remote) == shape(local)
    assert remote_one is not None
    assert shape(remote_one) == shape(remote[0])
    assert local_remote.info.experiment_name == exp
    assert local_remote.info.trace_metadata["tenant"] == "t1"

    # delete through the REST API
    reset_tracer(MLFLOW_TRACKING_URI=mlflow_tracking.url)
    assert routetrace.delete_traces(exp, trace_ids=[remote[0].info.trace_id]) == 1
    assert len(routetrace.search_traces(exp, return_type="list")) == 2
    assert routetrace.delete_traces(exp, max_traces=5) == 2
    assert routetrace.search_traces(exp, return_type="list") == []
    with pytest.raises(ValueError, match="refusing"):
        routetrace.delete_traces(exp)


def test_search_filter_order_and_paging(mlflow_tracking) -> None:
    exp = _name("rt-filter")
    routetrace.set_experiment(exp)

    @routetrace.trace
    def step(i: int) -> int:
        if i % 3 == 0:
            routetrace.update_current_trace(tags={"kind": "third"})
        return i

    for i in range(12):
        step(i)
    assert routetrace.flush(timeout=60)
    third = routetrace.search_traces(exp, filter_string="tags.kind = 'third'", return_type="list")
    assert len(third) == 4
    page = routetrace.search_traces(exp, max_results=5, order_by=["timestamp_ms ASC"],
                                    return_type="list")
    assert len(page) == 5
    times = [t.info.request_time for t in page]
    assert times == sorted(times)
    backend = routetrace._get_tracer().backend
    exp_ids = [page[0].info.experiment_id]
    head = backend.search_traces(experiment_ids=exp_ids, max_results=10,
                                 order_by=["timestamp_ms ASC"], include_spans=False)
    tail = backend.search_traces(experiment_ids=exp_ids, offset=10,
                                 order_by=["timestamp_ms ASC"], include_spans=False)
    assert len(tail) == 2
    assert len({t.info.trace_id for t in head + tail}) == 12
    assert tail[0].data.spans == []


def test_experiments_resolved_once_and_created(mlflow_tracking) -> None:
    backend = backend_for_uri(mlflow_tracking.url, load_settings())
    assert isinstance(backend, MlflowServerBackend)
    name = _name("rt-create")
    a = backend.resolve_experiment(Experiment(name=name))
    assert backend.resolve_experiment(Experiment(name=name)) is a
    assert backend.resolve_experiment(Experiment(experiment_id=a.experiment_id)).name == name
    assert name in [e.name for e in backend.list_experiments()]
    with pytest.raises(BackendError, match="no experiment named"):
        backend.resolve_experiment(Experiment(name=_name("missing")), create=False)


def test_outage_no_call_fails_every_trace_arrives_once(mlflow_tracking, caplog) -> None:
    """The server stops for 10 s under load and comes back on the same port and store."""
    exp = _name("rt-outage")
    routetrace.set_experiment(exp)

    @routetrace.trace
    def handler(i: int) -> int:
        return i

    produced: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def producer() -> None:
        i = 0
        while not stop.is_set() and i < 3000:
            try:
                handler(i)
                produced.append(routetrace.get_last_active_trace_id())
            except BaseException as exc:  # a producer call must never fail
                errors.append(exc)
            i += 1
            stop.wait(0.01)  # pacing the load loop, not synchronisation

    handler(-1)  # experiment resolved while the server is up
    produced.append(routetrace.get_last_active_trace_id())
    thread = threading.Thread(target=producer)
    thread.start()
    try:
        wait_until(lambda: len(produced) > 50, 30, what="load running")
        mlflow_tracking.stop()
        down_at = time.monotonic()
        wait_until(lambda: time.monotonic() - down_at >= 10, 20, interval=0.5,
                   what="10 s of outage")
        during = len(produced)
        mlflow_tracking.start()
        wait_until(lambda: len(produced) > during + 50, 60, what="load after restart")
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    assert routetrace.flush(timeout=180)
    stats = routetrace.get_export_stats()
    assert stats["failed"] == 0, stats
    assert stats["dropped"] == 0, stats

    backend = routetrace._get_tracer().backend
    exp_id = backend.resolve_experiment(Experiment(name=exp)).experiment_id
    arrived = [t.info.trace_id for t in backend.search_traces(
        experiment_ids=[exp_id], max_results=10_000, include_spans=False)]
    assert len(arrived) == len(set(arrived)) == len(set(produced)) == len(produced)
    assert set(arrived) == set(produced)
    print(f"\noutage test: produced={len(produced)} during_outage≈{during} "
          f"arrived={len(arrived)} stats={stats}")


# -- auth, errors, credentials --------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers like an MLflow server enough for one write, recording request headers."""

    seen: list[dict[str, str]] = []
    status = 200

    def _reply(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        type(self).seen.append({"path": self.path, **{k.lower(): v for k, v in
                                                      self.headers.items()}})
        status = type(self).status
        body: dict[str, Any] = {}
        if status == 200 and "get-by-name" in self.path:
            body = {"experiment": {"experiment_id": "7", "name": "x",
                                   "lifecycle_stage": "active"}}
        elif status != 200:
            body = {"error_code": "PERMISSION_DENIED", "message": "nope"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if status == 429:
            self.send_header("retry-after", "7")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Rec", (_Recorder,), {"seen": [], "status": 200})
    with loopback_http_server(handler) as address:
        yield address, handler


def _one_trace(tmp_path) -> list[routetrace.Trace]:
    from routetrace.core.model import Span, SpanStatus, Trace, TraceData, TraceInfo

    tid = "tr-" + uuid.uuid4().hex
    now = time.time_ns()
    span = Span(tid, "00000000000000a1", None, "root", "UNKNOWN", now, now + 1000,
                SpanStatus("OK"), {"a": 1}, {"b": 2})
    info = TraceInfo(tid, "7", now // 1_000_000, 0, "OK", tags={"mlflow.traceName": "root"})
    return [Trace(info, TraceData([span]))]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"MLFLOW_TRACKING_TOKEN": "s3cr3t-token"}, "Bearer s3cr3t-token",
                     id="bearer token"),
        pytest.param({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-xyz"},
                     "Basic YWxpY2U6cHcteHl6", id="basic username and password"),
    ],
)
def test_auth_headers_and_no_credentials_in_logs(recorder, env, expected, tmp_path, caplog,
                                                 monkeypatch) -> None:
    address, handler = recorder
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    backend = MlflowServerBackend.from_uri(f"http://{address}", load_settings())
    caplog.set_level(logging.DEBUG)
    info = backend.resolve_experiment(Experiment(name="x"))
    backend.write_traces(info, _one_trace(tmp_path))
    assert handler.seen
    assert all(h.get("authorization") == expected for h in handler.seen)
    otlp = [h for h in handler.seen if h["path"] == "/v1/traces"]
    assert otlp[0]["x-mlflow-experiment-id"] == "7"
    assert otlp[0]["content-type"] == "application/x-protobuf"

    handler.status = 401
    backend._experiments.clear()
    with pytest.raises(BackendError) as err:
        backend.resolve_experiment(Experiment(name="y"))
    assert not err.value.retryable
    assert address in str(err.value)
    assert "MLFLOW_TRACKING_TOKEN" in str(err.value)
    secret = next(iter(env.values())) if "TOKEN" in next(iter(env)) else env[
        "MLFLOW_TRACKING_PASSWORD"]
    assert secret not in str(err.value)
    assert secret not in caplog.text
    backend.close()


def test_credentials_in_uri_are_redacted(recorder, caplog) -> None:
    address, handler = recorder
    backend = MlflowServerBackend.from_uri(f"http://bob:hunter2@{address}", load_settings())
    assert "hunter2" not in backend.uri
    assert "bob" not in backend.uri
    caplog.set_level(logging.DEBUG)
    backend.resolve_experiment(Experiment(name="x"))
    assert handler.seen[0]["authorization"] == "Basic Ym9iOmh1bnRlcjI="
    assert "hunter2" not in caplog.text
    backend.close()


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after", "message"),
    [
        pytest.param(429, True, 7.0, "HTTP 429", id="429 retry-after"),
        pytest.param(503, True, None, "HTTP 503", id="503"),
        pytest.param(403, False, None, "MLFLOW_TRACKING_USERNAME", id="403"),
        pytest.param(404, False, None, "server too old (needs MLflow >= 3.6)", id="no /v1/traces"),
    ],
)
def test_write_errors(recorder, tmp_path, status, retryable, retry_after, message) -> None:
    address, handler = recorder
    backend = MlflowServerBackend.from_uri(f"http://{address}", load_settings())
    info = backend.resolve_experiment(Experiment(name="x"))
    handler.status = status
    with pytest.raises(BackendError) as err:
        backend.write_traces(info, _one_trace(tmp_path))
    assert err.value.retryable is retryable
    assert err.value.retry_after == retry_after
    assert message in str(err.value)
    assert address in str(err.value)
    backend.close()


def test_unreachable_server_app_keeps_serving_and_spools(reset_tracer, tmp_path, caplog) -> None:
    url = f"http://user:pw-secret@127.0.0.1:{free_port()}"
    reset_tracer(MLFLOW_TRACKING_URI=url, ROUTETRACE_SPOOL_DIR=str(tmp_path / "spool"),
                 MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT="0.5")

    @routetrace.trace
    def handler() -> str:
        return "served"

    assert handler() == "served"
    assert routetrace.flush(timeout=60)
    stats = routetrace.get_export_stats()
    assert stats["spooled"] == 1, stats
    assert list((tmp_path / "spool").glob("*.jsonl"))
    assert "cannot reach the MLflow server at http://***@127.0.0.1" in caplog.text
    assert "pw-secret" not in caplog.text


def test_unknown_scheme_message() -> None:
    with pytest.raises(ValueError, match=r"unknown scheme 'ftp'.*http\(s\)://"):
        backend_for_uri("ftp://u:p@host/x")


def test_missing_httpx_says_what_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "httpx":
            raise ImportError("no httpx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'routetrace\[mlflow\]'"):
        MlflowServerBackend.from_uri("http://127.0.0.1:1", load_settings())


def test_fastapi_route_table_two_experiments_on_server(mlflow_tracking, client) -> None:
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from routetrace.middleware import TracingMiddleware

    math_exp, chat_exp = _name("math-agent"), _name("chat-agent")
    app = fastapi.FastAPI()
    app.add_middleware(TracingMiddleware, config={
        "experiment": _name("web"),
        "routes": [
            {"path": "/math/{op}", "methods": ["POST"], "experiment": math_exp,
             "span_type": "AGENT"},
            {"path": "/chat/**", "experiment": chat_exp},
        ],
    })

    @app.post("/math/{op}")
    def math(op: str) -> dict[str, int]:
        with routetrace.start_span("compute", span_type=SpanType.TOOL) as span:
            span.set_inputs({"op": op})
            span.set_outputs(4)
        return {"result": 4}

    @app.get("/chat/{cid}")
    def chat(cid: str) -> dict[str, str]:
        return {"reply": f"hi {cid}"}

    with TestClient(app) as http:
        assert http.post("/math/add").json() == {"result": 4}
        assert http.get("/chat/42").json() == {"reply": "hi 42"}
    assert routetrace.flush(timeout=60)

    (m,) = mlflow.search_traces(locations=[_experiment_id(mlflow_tracking.url, math_exp)],
                                return_type="list")
    (c,) = mlflow.search_traces(locations=[_experiment_id(mlflow_tracking.url, chat_exp)],
                                return_type="list")
    m = mlflow.get_trace(m.info.trace_id)
    assert m.info.tags["mlflow.traceName"] == "POST /math/{op}"
    assert m.info.state.value == "OK"
    spans = {s.name: s for s in m.data.spans}
    by_id = {s.span_id: s for s in m.data.spans}
    ancestors, cur = [], spans["compute"]
    while cur.parent_id is not None:
        cur = by_id[cur.parent_id]
        ancestors.append(cur.name)
    assert ancestors[-1] == "POST /math/{op}"  # the span tree reaches the request's root
    assert spans["POST /math/{op}"].span_type == "AGENT"
    assert spans["compute"].span_type == "TOOL"
    assert spans["compute"].outputs == 4
    assert c.info.tags["mlflow.traceName"] == "GET /chat/{cid}"


def test_a_forked_child_uses_its_own_connections_not_the_parent_s() -> None:
    """gunicorn --preload: the parent's pooled client and locks stay with the parent."""
    import os

    backend = MlflowServerBackend("http://127.0.0.1:9", load_settings({}))
    parent_client = backend._http()
    assert backend._http() is parent_client
    pid = os.fork()
    if pid == 0:  # the child: report by exit code, never return into pytest
        ok = False
        try:
            child_client = backend._http()
            ok = child_client is not parent_client and backend._http() is child_client
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend._http() is parent_client
    backend.close()
