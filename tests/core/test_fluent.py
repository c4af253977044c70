"""The fluent API: @trace, start_span, the current trace, destinations, runs."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading

import pytest

import routetrace
from routetrace import Experiment, SpanType
from tests.conftest import traces_of

pytestmark = pytest.mark.anyio


def _only(traces):
    assert len(traces) == 1, [t.info for t in traces]
    return traces[0]


def _tree(trace):
    """(name, parent name) pairs, sorted by start time."""
    by_id = {s.span_id: s for s in trace.data.spans}
    return [
        (s.name, by_id[s.parent_id].name if s.parent_id else None)
        for s in sorted(trace.data.spans, key=lambda s: s.start_time_ns)
    ]


def test_trace_sync_records_bound_inputs_outputs_and_nesting():
    @routetrace.trace(span_type=SpanType.TOOL, attributes={"k": "v"})
    def add(a, b=2):
        return a + b

    @routetrace.trace
    def outer(x):
        with routetrace.start_span("middle", span_type="CHAIN") as span:
            span.set_inputs({"x": x})
            y = add(x)
            span.set_outputs(y)
        return y * 10

    assert outer(1) == 30
    trace = _only(traces_of())
    assert _tree(trace) == [("outer", None), ("middle", "outer"), ("add", "middle")]
    add_span = trace.search_spans(name="add")[0]
    assert add_span.inputs == {"a": 1, "b": 2}
    assert add_span.outputs == 3
    assert add_span.span_type == "TOOL"
    assert add_span.attributes == {"k": "v", "mlflow.spanFunctionName": "add"}
    assert trace.info.state == "OK"
    assert trace.info.tags["mlflow.traceName"] == "outer"
    assert trace.info.request_preview == '{"x": 1}'
    assert trace.info.response_preview == "30"
    assert trace.info.trace_id.startswith("tr-") and len(trace.info.trace_id) == 35
    for span in trace.data.spans:
        assert span.trace_id == trace.info.trace_id
        assert span.end_time_ns >= span.start_time_ns


def test_trace_preserves_function_metadata_and_signature():
    def f(a: int, *, b: str = "x") -> str:
        """Doc."""
        return b * a

    traced = routetrace.trace(f)
    assert traced.__name__ == "f" and traced.__doc__ == "Doc."
    assert inspect.signature(traced) == inspect.signature(f)
    assert traced.__wrapped__ is f
    assert routetrace.trace(name="custom")(f)(2) == "xx"
    assert _only(traces_of()).data.spans[0].name == "custom"


def test_methods_drop_self_from_inputs():
    class Agent:
        @routetrace.trace
        def run(self, q):
            return q.upper()

    assert Agent().run("hi") == "HI"
    assert _only(traces_of()).data.spans[0].inputs == {"q": "hi"}


def test_exception_marks_error_records_event_and_reraises_unchanged():
    class Boom(Exception):
        pass

    err = Boom("bad")

    @routetrace.trace
    def fails():
        raise err

    with pytest.raises(Boom) as info:
        fails()
    assert info.value is err
    trace = _only(traces_of())
    span = trace.data.spans[0]
    assert trace.info.state == "ERROR"
    assert span.status.status_code == "ERROR"
    assert "Boom: bad" in span.status.description
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "Boom"
    assert event.attributes["exception.message"] == "bad"
    assert "raise err" in event.attributes["exception.stacktrace"]


async def test_async_function_and_task_inheritance():
    @routetrace.trace
    async def child(i):
        await asyncio.sleep(0)
        return i

    @routetrace.trace
    async def parent():
        return sum(await asyncio.gather(*(child(i) for i in range(3))))

    assert await parent() == 3
    trace = _only(traces_of())
    names = _tree(trace)
    assert names[0] == ("parent", None)
    assert sorted(names[1:]) == [("child", "parent")] * 3


def test_generator_span_covers_whole_iteration():
    @routetrace.trace
    def numbers(n):
        for i in range(n):
            with routetrace.start_span(f"step{i}"):
                pass
            yield i

    gen = numbers(3)
    assert routetrace.get_current_active_span() is None  # nothing started yet
    assert list(gen) == [0, 1, 2]
    trace = _only(traces_of())
    root = trace.root_span
    assert root.name == "numbers"
    assert root.outputs == [0, 1, 2]
    assert root.inputs == {"n": 3}
    assert {(n, p) for n, p in _tree(trace)[1:]} == {
        ("step0", "numbers"), ("step1", "numbers"), ("step2", "numbers")
    }
    steps = trace.search_spans(name="step2")[0]
    assert root.end_time_ns >= steps.end_time_ns


def test_generator_send_throw_close_and_reducer():
    @routetrace.trace(output_reducer=lambda items: "".join(items))
    def echo():
        received = yield "a"
        while received is not None:
            received = yield received

    gen = echo()
    assert next(gen) == "a"
    assert gen.send("b") == "b"
    gen.close()
    assert _only(traces_of()).root_span.outputs == "ab"

    @routetrace.trace
    def catches():
        try:
            yield 1
        except ValueError:
            yield 2

    g = catches()
    next(g)
    assert g.throw(ValueError("x")) == 2
    g.close()
    routetrace.flush()


async def test_async_generator_span_covers_iteration():
    @routetrace.trace
    async def stream(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert [i async for i in stream(3)] == [0, 1, 2]
    trace = _only(traces_of())
    assert trace.root_span.outputs == [0, 1, 2]


async def test_async_generator_error_is_recorded():
    @routetrace.trace
    async def broken():
        yield 1
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError):
        async for _ in broken():
            pass
    trace = _only(traces_of())
    assert trace.info.state == "ERROR"
    assert trace.root_span.outputs is None


def test_start_span_api_and_current_span():
    with routetrace.start_span("root", span_type=SpanType.AGENT, attributes={"a": 1}) as root:
        assert routetrace.get_current_active_span() is root
        trace_id = routetrace.get_active_trace_id()
        assert trace_id == root.trace_id
        root.set_attribute("b", [1, 2])
        root.add_event(routetrace.SpanEvent("marker", attributes={"x": 1}))
        with routetrace.start_span("child") as child:
            assert routetrace.get_current_active_span() is child
            assert child.parent_id == root.span_id
            child.set_status("ERROR")
        assert routetrace.get_current_active_span() is root
    assert routetrace.get_current_active_span() is None
    assert routetrace.get_active_trace_id() is None
    trace = routetrace.get_trace(trace_id) if routetrace.flush() else None
    assert trace is not None
    assert trace.root_span.span_type == "AGENT"
    assert trace.root_span.attributes == {"a": 1, "b": [1, 2]}
    assert trace.root_span.events[0].name == "marker"
    assert trace.search_spans(name="child")[0].status.status_code == "ERROR"
    assert trace.info.state == "OK"  # a child's error does not fail the trace
    assert routetrace.get_last_active_trace_id() == trace_id


def test_update_current_trace():
    with routetrace.start_span("root"):
        routetrace.update_current_trace(
            tags={"user": "u1"}, metadata={"session": "s1"},
            request_preview="custom request", response_preview="custom response",
        )
    trace = _only(traces_of())
    assert trace.info.tags["user"] == "u1"
    assert trace.info.trace_metadata["session"] == "s1"
    assert trace.info.request_preview == "custom request"
    assert trace.info.response_preview == "custom response"
    assert _only(traces_of(filter_string="tags.user = 'u1'")).info.trace_id == trace.info.trace_id


def test_update_current_trace_outside_a_trace_is_ignored(caplog):
    routetrace.update_current_trace(tags={"x": "y"})
    assert "outside a trace" in caplog.text


def test_threads_join_the_trace_through_copied_context_and_executor():
    def work(i):
        with routetrace.start_span(f"thread{i}"):
            pass

    with routetrace.start_span("root"):
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(work, 0))
        t.start()
        t.join()
        t = threading.Thread(target=routetrace.copy_context_to(work), args=(1,))
        t.start()
        t.join()
        with routetrace.TracedThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(work, i) for i in (2, 3)]:
                future.result()
    trace = _only(traces_of())
    assert sorted(_tree(trace)[1:]) == [(f"thread{i}", "root") for i in range(4)]


def test_a_thread_without_context_starts_its_own_trace():
    def work():
        with routetrace.start_span("alone"):
            pass

    with routetrace.start_span("root"):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert sorted(t.data.spans[0].name for t in traces_of()) == ["alone", "root"]


def test_a_span_started_after_its_trace_ended_is_a_linked_trace_in_the_same_experiment():
    # A thread handed the request's context that outlives it (fire and forget).
    go = threading.Event()

    def later():
        go.wait(10)
        with routetrace.start_span("after"):
            with routetrace.start_span("inner"):
                pass

    with routetrace.start_span("request", trace_destination=Experiment(name="jobs")):
        worker = threading.Thread(target=routetrace.copy_context_to(later))
        worker.start()
    go.set()
    worker.join(10)
    by_name = {t.root_span.name: t for t in traces_of("jobs")}
    assert sorted(by_name) == ["after", "request"]
    follow_up = by_name["after"]
    assert [s.name for s in follow_up.data.spans] == ["after", "inner"]
    assert follow_up.info.trace_id != by_name["request"].info.trace_id
    assert follow_up.info.trace_metadata["routetrace.parentTraceId"] == (
        by_name["request"].info.trace_id)
    assert traces_of("Default") == []


async def test_30_concurrent_tasks_each_with_its_own_context_local_destination():
    async def request(i):
        routetrace.set_destination(Experiment(name=f"exp-{i}"), context_local=True)
        await asyncio.sleep(0)
        with routetrace.start_span(f"req-{i}"):
            await asyncio.sleep(0.001 * (i % 3))
            with routetrace.start_span("inner"):
                await asyncio.sleep(0)

    await asyncio.gather(*(asyncio.create_task(request(i)) for i in range(30)))
    traces = traces_of()
    assert len(traces) == 30
    for trace in traces:
        i = trace.root_span.name.split("-")[1]
        assert trace.info.experiment_name == f"exp-{i}"
        assert len(trace.data.spans) == 2
    for i in range(30):
        assert len(routetrace.search_traces(f"exp-{i}", return_type="list")) == 1


def test_destination_precedence(reset_tracer):
    reset_tracer(MLFLOW_EXPERIMENT_NAME="from-env")
    tracer = routetrace._get_tracer()

    def root_in(**kwargs):
        span = tracer.start_span("s", parent=None, **kwargs)
        span.end()
        return span.trace.destination

    assert root_in() == Experiment(name="from-env")
    assert root_in(route_default=Experiment(name="table")) == Experiment(name="table")
    routetrace.set_destination(Experiment(name="global"))
    assert root_in(route_default=Experiment(name="table")) == Experiment(name="global")
    token = routetrace.core.destination.set_context_destination(Experiment(name="local"))
    try:
        assert root_in() == Experiment(name="local")
        assert root_in(trace_destination=Experiment(name="explicit")) == Experiment(
            name="explicit"
        )
    finally:
        routetrace.core.destination.reset_context_destination(token)
    routetrace.set_destination(None)
    routetrace.set_experiment("set-exp")
    assert root_in() == Experiment(name="set-exp")


def test_trace_destination_on_root_and_ignored_on_child(caplog):
    @routetrace.trace(trace_destination=Experiment(name="explicit"))
    def inner():
        return 1

    inner()
    with routetrace.start_span("root"):
        inner()
    assert "only used on a root span" in caplog.text
    assert len(traces_of("explicit")) == 1
    assert len(traces_of("Default")) == 1


def test_experiment_validation():
    with pytest.raises(ValueError, match="exactly one"):
        Experiment()
    with pytest.raises(ValueError, match="exactly one"):
        Experiment(name="a", experiment_id="1")
    with pytest.raises(ValueError, match="non-empty"):
        Experiment(name="  ")
    assert Experiment(experiment_id=5).experiment_id == "5"
    with pytest.raises(TypeError, match="Experiment"):
        routetrace.set_destination("chat")  # type: ignore[arg-type]


def test_start_run_tags_traces_with_run_id():
    with routetrace.start_run(run_name="eval") as run:
        with routetrace.start_span("in-run"):
            pass
    with routetrace.start_span("outside"):
        pass
    found = traces_of(run_id=run.info.run_id)
    assert [t.root_span.name for t in found] == ["in-run"]
    assert found[0].info.run_id == run.info.run_id
    assert found[0].info.trace_metadata["mlflow.sourceRun"] == run.info.run_id


def test_unserialisable_inputs_never_raise():
    class Weird:
        def __repr__(self):
            raise RuntimeError("no repr")

        def __str__(self):
            raise RuntimeError("no str")

    cyclic: list = []
    cyclic.append(cyclic)

    @routetrace.trace
    def f(a, b, c, d):
        return {"set": {1}, "bytes": b"\xff\x00", "nan": float("nan")}

    assert f(Weird(), cyclic, object(), 1e400) is not None
    span = _only(traces_of()).root_span
    assert span.inputs["d"] == "inf"
    assert "unrepresentable" in span.inputs["a"]
    assert span.outputs["nan"] == "nan"


def test_inputs_are_captured_at_call_time_not_export_time():
    @routetrace.trace
    def mutate(items):
        items.append("later")
        return len(items)

    data = ["first"]
    mutate(data)
    assert _only(traces_of()).root_span.inputs == {"items": ["first"]}


def test_span_end_twice_and_set_status_validation():
    with routetrace.start_span("root") as span:
        with pytest.raises(ValueError, match="OK"):
            span.set_status("MAYBE")
    span.end()  # second end: no-op
    assert len(traces_of()) == 1


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(lambda f: f(1), {"a": 1, "b": 2, "c": None}, id="defaults"),
        pytest.param(lambda f: f(1, c=3), {"a": 1, "b": 2, "c": 3}, id="keyword-only"),
        pytest.param(lambda f: f(b=5, a=4), {"a": 4, "b": 5, "c": None}, id="keywords reordered"),
    ],
)
def test_fast_argument_binding_matches_signature_bind(call, expected):
    @routetrace.trace
    def f(a, b=2, *, c=None):
        return a

    call(f)
    assert _only(traces_of()).root_span.inputs == expected


def test_binding_of_varargs_and_bad_calls_falls_back():
    @routetrace.trace
    def g(a, *rest, **extra):
        return a

    g(1, 2, 3, k="v")
    assert _only(traces_of()).root_span.inputs == {"a": 1, "rest": [2, 3], "extra": {"k": "v"}}

    @routetrace.trace
    def h(a):
        return a

    with pytest.raises(TypeError):
        h(1, 2)  # the function's own TypeError, not routetrace's
    assert traces_of()[0].root_span.inputs == {"args": [1, 2], "kwargs": {}}


def test_non_utf8_text_is_stored_not_a_poison_batch():
    bad = b"/caf\xe9".decode("utf-8", "surrogateescape")  # what a server makes of raw bytes
    with routetrace.start_span(f"GET {bad}") as span:
        span.set_attribute(f"k{bad}", bad)
        span.set_inputs({"path": bad})
        span.add_event(routetrace.SpanEvent(bad, attributes={"v": bad}))
        routetrace.update_current_trace(tags={"p": bad}, metadata={"m": bad},
                                        request_preview=bad)
    with routetrace.start_span("fine"):
        pass
    traces = traces_of()
    assert sorted(t.root_span.name for t in traces) == ["GET /caf\\udce9", "fine"]
    stored = next(t for t in traces if t.root_span.name != "fine")
    assert stored.root_span.inputs == {"path": "/caf\\udce9"}
    assert stored.info.tags["p"] == "/caf\\udce9"
    assert routetrace.get_export_stats()["spooled"] == 0


def test_finished_traces_are_freed_without_the_cycle_collector():
    import gc

    from routetrace.core.live_trace import LiveTrace

    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            with routetrace.start_span("root") as span:
                with routetrace.start_span("child"):
                    pass
        del span
        assert routetrace.flush()
        leftovers = [o for o in gc.get_objects() if type(o) is LiveTrace]
        assert leftovers == []  # freed by reference counting alone
    finally:
        gc.enable()


def test_update_current_trace_takes_every_mlflow_3_argument():
    with routetrace.start_span("root"):
        routetrace.update_current_trace(
            tags={"t": 1}, metadata={"m": "x"}, client_request_id="req-1",
            request_preview="in", response_preview="out", state="ERROR",
            model_id="model-7", session_id="session-1", user="user-1",
        )
    trace = _only(traces_of())
    assert trace.info.client_request_id == "req-1"
    assert (trace.info.request_preview, trace.info.response_preview) == ("in", "out")
    assert trace.info.state == "ERROR"
    assert trace.root_span.status.status_code == "UNSET"  # the state alone changed
    assert trace.info.tags["t"] == "1"
    meta = trace.info.trace_metadata
    assert (meta["m"], meta["mlflow.modelId"], meta["mlflow.trace.session"],
            meta["mlflow.trace.user"]) == ("x", "model-7", "session-1", "user-1")
    assert "routetrace.stateOverride" not in meta


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"state": "IN_PROGRESS"}, "state must be 'OK' or 'ERROR'", id="state"),
    pytest.param({"request_preview": 3}, "request_preview must be a string", id="preview"),
])
def test_update_current_trace_refuses_bad_values_naming_them(kwargs, message):
    with routetrace.start_span("root"), pytest.raises((ValueError, TypeError), match=message):
        routetrace.update_current_trace(**kwargs)


def test_get_trace_of_the_last_traced_call_finds_it_without_a_flush():
    @routetrace.trace
    def answer(q):
        return 42

    answer("why")
    trace = routetrace.get_trace(routetrace.get_last_active_trace_id())
    assert trace is not None and trace.root_span.outputs == 42


def test_search_traces_defaults_to_the_active_experiment_as_mlflow():
    for name in ("first", "second"):
        routetrace.set_experiment(name)
        with routetrace.start_span(name):
            pass
    assert routetrace.flush(timeout=30)
    assert [t.info.experiment_name for t in routetrace.search_traces(return_type="list")] == [
        "second"]
    first_id = routetrace.set_experiment("first").experiment_id
    assert [t.root_span.name for t in routetrace.search_traces(
        locations=[first_id], return_type="list")] == ["first"]


def test_search_traces_returns_mlflow_dataframe_by_default():
    with routetrace.start_span("span1") as span:
        span.set_inputs({"a": 1})
        span.set_outputs({"c": 3})
        routetrace.update_current_trace(client_request_id="req-9")
    assert routetrace.flush(timeout=30)
    df = routetrace.search_traces(extract_fields=["span1.inputs", "span1.outputs.c"])
    assert list(df.columns) == [
        "trace_id", "trace", "client_request_id", "state", "request_time",
        "execution_duration", "request", "response", "trace_metadata", "tags", "spans",
        "assessments", "span1.inputs", "span1.outputs.c",
    ]
    row = df.iloc[0]
    assert (row["client_request_id"], row["request"], row["span1.outputs.c"]) == (
        "req-9", {"a": 1}, 3)
    assert routetrace.Trace.from_json(row["trace"]).info.trace_id == row["trace_id"]


def test_search_traces_without_spans_and_ordered_by_each_field():
    for i in range(3):
        with routetrace.start_span(f"s{i}"):
            pass
    assert routetrace.flush(timeout=30)
    bare = routetrace.search_traces(return_type="list", include_spans=False)
    assert len(bare) == 3 and all(not t.data.spans for t in bare)
    for field in ("experiment_id", "timestamp", "timestamp_ms", "execution_time",
                  "execution_time_ms", "end_time", "end_time_ms", "status", "request_id",
                  "name", "run_id", "request_time", "execution_duration", "state"):
        for direction in ("ASC", "DESC"):
            found = routetrace.search_traces(order_by=[f"{field} {direction}"],
                                             return_type="list")
            assert len(found) == 3


def test_search_traces_names_the_pandas_extra_when_pandas_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"routetrace\[pandas\]"):
        routetrace.search_traces()
    assert routetrace.search_traces(return_type="list") == []


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"return_type": "polars"}, "return_type must be", id="return type"),
    pytest.param({"return_type": "list", "extract_fields": ["a.inputs"]},
                 "only supported with return_type='pandas'", id="extract with list"),
    pytest.param({"extract_fields": ["no-field-type"]}, "extract_fields entry",
                 id="bad extract field"),
    pytest.param({"locations": "0"}, "locations must be a list", id="locations string"),
])
def test_search_traces_refuses_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        routetrace.search_traces(**kwargs)


def test_search_traces_defaults_to_the_experiment_named_in_the_environment(reset_tracer):
    reset_tracer(MLFLOW_EXPERIMENT_NAME="from-env")
    with routetrace.start_span("here"):
        pass
    with routetrace.start_span("elsewhere", trace_destination=Experiment(name="other")):
        pass
    assert routetrace.flush(timeout=30)
    assert [t.root_span.name for t in routetrace.search_traces(return_type="list")] == ["here"]
