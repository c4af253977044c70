"""``routetrace.MlflowClient``: MLflow's tracing client methods, on the local store."""

from __future__ import annotations

import pytest

import routetrace
from routetrace import MlflowClient
from tests.conftest import traces_of


def test_client_builds_a_trace_by_ids_and_reads_it_back() -> None:
    client = MlflowClient()
    root = client.start_trace("agent", span_type="AGENT", inputs={"q": "hi"},
                              attributes={"a": 1}, tags={"team": "x"})
    child = client.start_span("tool", trace_id=root.trace_id, parent_id=root.span_id,
                              span_type="TOOL", inputs={"n": 2})
    assert routetrace.get_current_active_span() is None  # the client never makes spans current
    client.end_span(root.trace_id, child.span_id, outputs=4, status="ERROR")
    client.end_trace(root.trace_id, outputs={"answer": 4})

    trace = client.get_trace(root.trace_id)
    by_name = {s.name: s for s in trace.data.spans}
    assert by_name["tool"].parent_id == by_name["agent"].span_id
    assert (by_name["tool"].inputs, by_name["tool"].outputs) == ({"n": 2}, 4)
    assert by_name["tool"].status.status_code == "ERROR"
    assert by_name["agent"].outputs == {"answer": 4}
    assert by_name["agent"].attributes == {"a": 1}
    assert trace.info.tags["team"] == "x"


def test_client_tags_running_and_stored_traces() -> None:
    client = MlflowClient()
    root = client.start_trace("agent")
    client.set_trace_tag(root.trace_id, "during", "1")
    client.set_trace_tag(root.trace_id, "gone", "1")
    client.delete_trace_tag(root.trace_id, "gone")
    client.end_trace(root.trace_id)
    client.set_trace_tag(root.trace_id, "after", "2")  # stored by now, or waited for
    client.set_trace_tag(root.trace_id, "later-gone", "3")
    client.delete_trace_tag(root.trace_id, "later-gone")
    tags = client.get_trace(root.trace_id).info.tags
    assert {k: v for k, v in tags.items() if k != "mlflow.traceName"} == {"during": "1",
                                                                          "after": "2"}


def test_client_search_pages_with_the_returned_token() -> None:
    routetrace.set_experiment("paged")
    for i in range(5):
        with routetrace.start_span(f"s{i}"):
            pass
    (first,) = {t.info.experiment_id for t in traces_of("paged")}
    client = MlflowClient()
    seen: list[str] = []
    token = None
    while True:
        page = client.search_traces(locations=[first], max_results=2, page_token=token)
        seen += [t.info.trace_id for t in page]
        token = page.token
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 5
    assert client.delete_traces(first, trace_ids=seen[:2]) == 2
    assert len(client.search_traces(experiment_ids=[first])) == 3


def test_client_refuses_what_it_cannot_find_naming_it() -> None:
    client = MlflowClient()
    missing = "tr-" + "0" * 32
    with pytest.raises(KeyError, match=missing):
        client.get_trace(missing)
    with pytest.raises(KeyError, match="not running"):
        client.end_trace(missing)
    with pytest.raises(ValueError, match="locations"):
        client.search_traces()
    with pytest.raises(ValueError, match="page_token"):
        client.search_traces(locations=["1"], page_token="abc")


def test_client_span_calls_by_id_name_what_is_missing_or_not_running() -> None:
    client = MlflowClient()
    missing = "tr-" + "0" * 32
    with pytest.raises(TypeError, match="needs parent_id="):
        client.start_span("child", trace_id=missing)
    with pytest.raises(TypeError, match="needs span_id="):
        client.end_span(trace_id=missing)
    with pytest.raises(TypeError, match="trace_id="):
        client.end_span(span_id="abc")
    with pytest.raises(KeyError, match="not running"):
        client.end_span(trace_id=missing, span_id="abc")
    root = client.start_trace("root")
    with pytest.raises(KeyError, match="span 'abc' is not in running trace"):
        client.start_span("child", trace_id=root.trace_id, parent_id="abc")
    client.end_trace(root.trace_id)
