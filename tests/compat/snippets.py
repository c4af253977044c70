"""MLflow Tracing's documented examples, written as MLflow's docs write them, with
``import routetrace as mlflow``.

Each snippet is plain source: the suite runs it on routetrace as it stands and, with the import
lines put back to ``mlflow``, on MLflow itself, then compares what both read back. A snippet
leaves its checks to the suite; the few asserts inside are the docs' own expectations.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SNIPPETS", "Snippet", "for_mlflow"]


class Snippet(NamedTuple):
    id: str
    source: str
    traces: int  # how many traces it leaves in the active experiment


def for_mlflow(source: str) -> str:
    """The same snippet with MLflow's imports (the only lines that differ)."""
    return (source.replace("import routetrace as mlflow", "import mlflow")
            .replace("from routetrace.entities import", "from mlflow.entities import")
            .replace("from routetrace import MlflowClient", "from mlflow import MlflowClient"))


DECORATOR = Snippet("decorator", '''
import routetrace as mlflow


@mlflow.trace(span_type="func", attributes={"key": "value"})
def add_1(x):
    return x + 1


@mlflow.trace(span_type="func", attributes={"key1": "value1"})
def minus_1(x):
    return x - 1


@mlflow.trace(name="Trace Test")
def trace_test(x):
    step1 = add_1(x)
    return minus_1(step1)


trace_test(4)
''', 1)

CONTEXT_MANAGER = Snippet("start_span", '''
import routetrace as mlflow

with mlflow.start_span(name="my_span") as span:
    x = 1
    y = 2
    span.set_inputs({"x": x, "y": y})
    z = x + y
    span.set_outputs(z)
    span.set_attribute("key", "value")
''', 1)

SPAN_TYPES = Snippet("entities_span_type", '''
import routetrace as mlflow
from routetrace.entities import SpanType


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve_documents(query: str):
    return [{"page_content": "MLflow is an open source platform", "metadata": {"id": 1}}]


@mlflow.trace(span_type=SpanType.CHAIN)
def rag(query: str):
    docs = retrieve_documents(query)
    with mlflow.start_span(name="generate", span_type=SpanType.LLM) as span:
        span.set_inputs({"messages": [{"role": "user", "content": query}]})
        span.set_outputs({"choices": [{"message": {"content": "MLflow is a platform"}}]})
    return docs[0]["page_content"]


rag("What is MLflow?")
''', 1)

UPDATE_CURRENT_TRACE = Snippet("update_current_trace", '''
import routetrace as mlflow


@mlflow.trace
def my_func(x):
    mlflow.update_current_trace(tags={"fruit": "apple"}, client_request_id="req-12345")
    return x + 1


@mlflow.trace
def predict(messages: list[dict]) -> str:
    custom_preview = f"{messages[0]['content'][:10]} ... {messages[-1]['content'][:10]}"
    mlflow.update_current_trace(
        request_preview=custom_preview,
        response_preview="Bye!",
        session_id="session-4f855da00427",
        user="user-id-cc156f29bcfb",
        metadata={"app.version": "1.2.3"},
    )
    return "Bye!"


@mlflow.trace
def judged(x):
    mlflow.update_current_trace(state="ERROR")
    return x


my_func(1)
predict([{"role": "user", "content": "Hi, how are you?"},
         {"role": "assistant", "content": "Bye!"}])
judged(2)
''', 3)

EXCEPTION = Snippet("exception", '''
import routetrace as mlflow


@mlflow.trace
def failing(x):
    raise ValueError("Something went wrong")


try:
    failing(1)
except ValueError:
    pass
''', 1)

DISABLE_ENABLE = Snippet("tracing_disable_enable", '''
import routetrace as mlflow


@mlflow.trace
def f():
    return 0


mlflow.tracing.disable()
f()  # not traced
mlflow.tracing.enable()
f()  # traced
''', 1)

CONFIGURE = Snippet("tracing_configure", '''
import routetrace as mlflow


def filter_sensitive(span):
    if span.inputs and "password" in span.inputs:
        span.set_inputs({**span.inputs, "password": "[REDACTED]"})


@mlflow.trace
def login(user, password):
    return "ok"


mlflow.tracing.configure(span_processors=[filter_sensitive])
login("alice", "hunter2")
''', 1)

CLIENT = Snippet("mlflow_client", '''
import routetrace as mlflow
from routetrace import MlflowClient

client = MlflowClient()

root_span = client.start_trace("my_trace")
request_id = root_span.request_id

child_span = client.start_span(
    name="child_span",
    request_id=request_id,
    parent_id=root_span.span_id,
    inputs={"input_key": "input_value"},
    attributes={"attribute_key": "attribute_value"},
)
client.end_span(
    request_id=child_span.request_id,
    span_id=child_span.span_id,
    outputs={"output_key": "output_value"},
    attributes={"custom_attribute": "value"},
)
client.set_trace_tag(request_id, "stale", "x")
client.delete_trace_tag(request_id, "stale")
client.end_trace(request_id)

client.set_trace_tag(root_span.trace_id, "reviewed", "yes")
''', 1)

GET_LAST = Snippet("get_last_active_trace", '''
import routetrace as mlflow


@mlflow.trace
def answer(question):
    return "42"


answer("meaning of life?")
trace_id = mlflow.get_last_active_trace_id()
trace = mlflow.get_trace(trace_id, flush=True)
assert trace is not None
mlflow.set_trace_tag(trace_id, "checked", "true")
''', 1)

SEARCH_PANDAS = Snippet("search_traces_pandas", '''
import routetrace as mlflow

with mlflow.start_span(name="span1") as span:
    span.set_inputs({"a": 1, "b": 2})
    span.set_outputs({"c": 3, "d": 4})

df = mlflow.search_traces(
    extract_fields=["span1.inputs", "span1.outputs", "span1.outputs.c"],
    flush=True,
)
assert list(df["span1.outputs.c"]) == [3]
assert list(df.columns)[:3] == ["trace_id", "trace", "client_request_id"]
''', 1)

SEARCH_LIST = Snippet("search_traces_list", '''
import routetrace as mlflow


@mlflow.trace
def traced_func(x):
    return x + 1


with mlflow.start_run() as run:
    traced_func(1)

traces = mlflow.search_traces(run_id=run.info.run_id, return_type="list", flush=True)
assert len(traces) == 1
ok = mlflow.search_traces(filter_string="trace.status = 'OK'", return_type="list",
                          order_by=["timestamp_ms DESC"], include_spans=False)
assert ok and not ok[0].data.spans
''', 1)

SPAN_EVENTS = Snippet("span_events_status", '''
import routetrace as mlflow
from routetrace.entities import SpanEvent, SpanStatusCode

with mlflow.start_span(name="checked") as span:
    span.add_event(SpanEvent(name="validation", attributes={"passed": False}))
    span.set_status(SpanStatusCode.ERROR)
''', 1)

SNIPPETS = [DECORATOR, CONTEXT_MANAGER, SPAN_TYPES, UPDATE_CURRENT_TRACE, EXCEPTION,
            DISABLE_ENABLE, CONFIGURE, CLIENT, GET_LAST, SEARCH_PANDAS, SEARCH_LIST,
            SPAN_EVENTS]
