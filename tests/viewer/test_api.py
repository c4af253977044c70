"""The viewer's JSON API and pages, in process with Starlette's TestClient."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from routetrace.core.destination import Experiment
from routetrace.viewer import create_app
from routetrace.viewer.queries import PREVIEW_CHARS, TraceQuery, quote
from tests.viewer._data import HOSTILE, HUGE, fill_store, make_trace


@pytest.fixture
def client(store):
    return TestClient(create_app(store))


@pytest.fixture
def filled(store):
    return fill_store(store)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [t["trace_id"] for t in response.json()["traces"]]


def test_empty_store(client):
    assert client.get("/").status_code == 200
    exps = client.get("/api/experiments").json()["experiments"]
    assert [e["traces"] for e in exps] == [0]
    body = client.get("/api/traces").json()
    assert body["traces"] == []
    assert body["has_more"] is False
    assert body["total"] == 0


def test_experiments_with_counts(client, filled):
    exps = {e["name"]: e for e in client.get("/api/experiments").json()["experiments"]}
    assert exps["math-agent"]["traces"] == 7
    assert exps["chat-agent"]["errors"] == 1


def test_traces_newest_first_with_filters(client, filled, store):
    math_id = store.resolve_experiment(Experiment(name="math-agent")).experiment_id
    assert ids(client.get("/api/traces"))[:3] == [filled.hostile, filled.chat_error,
                                                 filled.math]
    assert ids(client.get("/api/traces", params={"status": "error"})) == [filled.chat_error]
    assert ids(client.get("/api/traces", params={"experiment_id": math_id,
                                                 "name": "MATH"}))[:1] == [filled.math]
    since = int(time.time() * 1000) - 3_600_000
    assert set(ids(client.get("/api/traces", params={"since": since}))) == {
        filled.math, filled.chat_error, filled.hostile}
    assert len(ids(client.get("/api/traces", params={"until": since}))) == 5
    raw = client.get("/api/traces", params={"filter": "tags.route = '/math/{op}'"})
    assert ids(raw) == [filled.math]


def test_free_text_looks_at_both_previews_and_escapes_quotes(client, filled):
    assert ids(client.get("/api/traces", params={"q": "RESULT"})) == [filled.math]  # response
    assert ids(client.get("/api/traces", params={"q": "hello"})) == [filled.chat_error]
    assert ids(client.get("/api/traces", params={"q": "o'brien"})) == [filled.hostile]
    assert ids(client.get("/api/traces", params={"q": "' OR 1=1 --"})) == []
    assert ids(client.get("/api/traces", params={"q": "\\'"})) == []


def test_paging(client, filled):
    pages = []
    for page in (1, 2, 3):
        body = client.get("/api/traces", params={"page": page, "page_size": 3}).json()
        pages.append(body)
    assert [len(p["traces"]) for p in pages] == [3, 3, 2]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert pages[0]["total"] == 8
    seen = [t["trace_id"] for p in pages for t in p["traces"]]
    assert len(set(seen)) == 8
    text_pages = [client.get("/api/traces", params={"q": "old", "page": p, "page_size": 2})
                  .json() for p in (1, 2, 3)]
    assert [len(p["traces"]) for p in text_pages] == [2, 2, 1]
    assert [p["has_more"] for p in text_pages] == [True, True, False]


@pytest.mark.parametrize(("params", "word"), [
    ({"status": "MAYBE"}, "status"), ({"page": "x"}, "page"), ({"page": "0"}, "page"),
    ({"filter": "trace.nope = 1"}, "trace.nope"), ({"since": "yesterday"}, "since"),
])
def test_bad_parameters_are_400_with_a_message(client, filled, params, word):
    response = client.get("/api/traces", params=params)
    assert response.status_code == 400
    assert word in response.json()["error"]


HUGE_INT = "9" * 40
HUGEST_INT = "9" * 5000  # past Python's own int() string limit


@pytest.mark.parametrize("value", [HUGE_INT, HUGEST_INT, str(2**63), "-" + HUGE_INT])
@pytest.mark.parametrize(("name", "word"), [
    ("page", "page"), ("since", "since"), ("until", "until"),
    ("experiment_id", "experiment id"), ("filter", "trace.timestamp_ms"),
])
def test_huge_integers_are_400_json_naming_the_parameter(client, filled, name, word, value):
    params = {name: f"trace.timestamp_ms > {value}" if name == "filter" else value}
    response = client.get("/api/traces", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert word in error
    assert len(error) < 200  # the number is cut short, not echoed whole


def test_the_largest_page_that_fits_is_an_empty_page(client, filled):
    last = (2**63 - 1) // 50
    body = client.get("/api/traces", params={"page": last}).json()
    assert body["traces"] == []
    assert client.get("/api/traces", params={"page": last + 1}).status_code == 400


def test_huge_previews_are_cut_in_the_table_and_whole_in_the_trace(client, filled):
    row = next(t for t in client.get("/api/traces").json()["traces"]
               if t["trace_id"] == filled.hostile)
    assert len(row["request_preview"]) == PREVIEW_CHARS + 1
    assert row["request_preview"].endswith("…")
    trace = client.get(f"/api/traces/{filled.hostile}").json()
    assert trace["data"]["spans"][0]["inputs"]["body"] == HUGE
    assert trace["info"]["tags"]["mlflow.traceName"] == HOSTILE


def test_trace_detail_and_missing_traces(client, filled):
    trace = client.get(f"/api/traces/{filled.math}").json()
    assert [s["name"] for s in trace["data"]["spans"]] == ["POST /math/{op}", "parse",
                                                           "compute", "llm"]
    assert client.get(f"/traces/{filled.math}").status_code == 200
    missing = "tr-" + "0" * 32
    assert client.get(f"/api/traces/{missing}").status_code == 404
    assert "no trace" in client.get(f"/api/traces/{missing}").json()["error"]
    assert client.get("/api/traces/garbage").status_code == 404
    page = client.get(f"/traces/{missing}")
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert client.get("/no/such/page").status_code == 404


def test_non_finite_numbers_still_make_valid_json(client, store):
    exp = store.resolve_experiment(Experiment(name="nan"))
    trace = make_trace(70, exp.experiment_id, "nan", int(time.time() * 1000),
                       [("nan", "UNKNOWN", None, 0, 1, "OK")])
    trace.data.spans[0].attributes["score"] = float("nan")
    store.write_traces(exp, [trace])
    response = client.get(f"/api/traces/{trace.info.trace_id}")
    assert response.status_code == 200
    assert response.json()["data"]["spans"][0]["attributes"]["score"] == "nan"


def test_security_headers_and_static_assets(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("app.js", "style.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200
        assert "http://" not in response.text
        assert "https://" not in response.text
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script


def test_allowed_hosts_blocks_dns_rebinding(store):
    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:5050").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://evil.example").get("/api/info").status_code == 400


@pytest.mark.parametrize(("text", "literal"), [
    ("plain", "'plain'"), ("o'brien", "'o\\'brien'"), ("back\\slash", "'back\\\\slash'"),
])
def test_quote(text, literal):
    assert quote(text) == literal


def test_query_builds_an_mlflow_filter():
    query = TraceQuery(status="ERROR", name="chat", since_ms=5, until_ms=9,
                       extra_filter="tags.a = 'b'")
    assert query.filter_string() == (
        "trace.status = 'ERROR' AND trace.name ILIKE '%chat%' AND trace.timestamp_ms >= 5 "
        "AND trace.timestamp_ms <= 9 AND tags.a = 'b'")
