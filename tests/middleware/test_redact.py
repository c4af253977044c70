"""Secrets in captured bodies, headers and query strings never reach the store.

Every "never stored" check reads the trace back through the API and scans the raw bytes of
the store (database, WAL, shared memory) with a positive control: a captured non-secret
marker that must be found, so a scan that sees nothing fails.

    ROUTETRACE_HYPOTHESIS_EXAMPLES=2000 .venv/bin/pytest tests/middleware/test_redact.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routetrace
from routetrace.core.tracer import Tracer
from routetrace.middleware import TracingMiddleware, WSGITracingMiddleware
from tests.conftest import traces_of
from tests.fixtures.asgi import read_body
from tests.fixtures.servers import free_port, wait_until
from tests.middleware.conftest import call, only_trace

SECRET = "rt-s3cr3t-"
VISIBLE = "rt-v1s1ble-"
EXAMPLES = int(os.environ.get("ROUTETRACE_HYPOTHESIS_EXAMPLES", "60"))
JSON = [(b"content-type", b"application/json")]
# sentry_sdk.scrubber.DEFAULT_DENYLIST and DEFAULT_PII_DENYLIST, as Sentry ships them.
SENTRY_DENYLIST = (
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd",
    "privatekey", "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken",
    "x_forwarded_for", "set_cookie", "cookie", "authorization", "proxy-authorization",
    "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session", "_xsrf", "XSRF-TOKEN",
    "x_real_ip", "ip_address", "remote_addr",
)


def store_bytes(tracer: Tracer) -> bytes:
    assert routetrace.flush(timeout=30)
    root = Path(tracer.backend.db_path).parent
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the request's own body with its content type, and a secret response header."""
    body = await read_body(receive)
    content_type = dict(scope["headers"]).get(b"content-type", b"text/plain")
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type), (b"x-auth-token", f"{SECRET}response".encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE", "text/plain")),
                              ("X-Auth-Token", f"{SECRET}response")])
    return [body]


# -- JSON ---------------------------------------------------------------------------------
def test_json_secrets_are_scrubbed_at_every_depth_of_request_and_response(tracer) -> None:
    doc = {
        "user": {"name": "bob", "password": f"{SECRET}1",
                 "profile": {"apiKey": f"{SECRET}2", "email": "bob@example.com"}},
        "items": [{"auth_token": f"{SECRET}3"}, [{"X-Session-Id": f"{SECRET}4"}]],
        "credentials": {"user": "u", "pass": f"{SECRET}5"},
        "note": f"{VISIBLE}json",
        "max_tokens": 64, "usage": {"prompt_token_count": 12, "total_tokens": 20},
    }
    raw = json.dumps(doc).encode()
    mw = TracingMiddleware(echo, config={"experiment": "sec", "capture_body": True})
    sent = call(mw, "POST", "/chat", chunks=[raw[:40], raw[40:]], headers=JSON)

    assert sent.body == raw  # the app's answer, byte for byte
    scrubbed = {
        "user": {"name": "bob", "password": "REDACTED",
                 "profile": {"apiKey": "REDACTED", "email": "bob@example.com"}},
        "items": [{"auth_token": "REDACTED"}, [{"X-Session-Id": "REDACTED"}]],
        "credentials": "REDACTED",
        "note": f"{VISIBLE}json",
        "max_tokens": 64, "usage": {"prompt_token_count": 12, "total_tokens": 20},
    }
    root = only_trace("sec").data.spans[0]
    assert root.inputs["body"] == scrubbed
    assert root.outputs["body"] == scrubbed
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert f"{VISIBLE}json".encode() in blob


def test_json_cut_by_the_cap_is_scrubbed_up_to_the_cut(tracer) -> None:
    raw = json.dumps({"a": f"{VISIBLE}cut", "password": f"{SECRET}1", "nested": {"x": 1},
                      "token": f"{SECRET}2-{'x' * 100}"}).encode()
    cap = raw.index(b"x" * 10)  # the cut falls inside the token's value
    mw = TracingMiddleware(echo, config={"experiment": "sec", "capture_body": cap})
    call(mw, "POST", "/cut", chunks=[raw], headers=JSON)

    body = only_trace("sec").data.spans[0].inputs["body"]
    assert body == (f'{{"a": "{VISIBLE}cut", "password": "REDACTED", "nested": {{"x": 1}}, '
                    f'"token": "REDACTED"... [truncated: {len(raw)} bytes in total, {cap} kept]')
    assert SECRET.encode() not in store_bytes(tracer)


# -- forms, headers, query strings -------------------------------------------------------------
def test_form_fields_query_keys_and_headers_are_scrubbed_through_wsgi(tracer) -> None:
    form = (f"user=bob&password={SECRET}1&newPassword={SECRET}2&api%5Fkey={SECRET}3"
            f"&note={VISIBLE}form").encode()
    mw = WSGITracingMiddleware(wsgi_echo, config={
        "experiment": "sec", "capture_body": True,
        "capture_headers": ["x-auth-token", "x-request-id", "content-type"]})
    with httpx.Client(transport=httpx.WSGITransport(app=mw), base_url="http://t") as client:
        response = client.post(
            "/login", content=form,
            params={"auth_token": f"{SECRET}4", "accessToken": f"{SECRET}5", "page": "2"},
            headers={"content-type": "application/x-www-form-urlencoded",
                     "X-Auth-Token": f"{SECRET}6", "X-Request-Id": f"{VISIBLE}id"})
    assert response.content == form
    assert response.headers["x-auth-token"] == f"{SECRET}response"

    root = only_trace("sec").data.spans[0]
    assert root.inputs["body"] == ("user=bob&password=REDACTED&newPassword=REDACTED"
                                   f"&api%5Fkey=REDACTED&note={VISIBLE}form")
    assert root.outputs["body"] == root.inputs["body"]
    assert root.inputs["query"] == "auth_token=REDACTED&accessToken=REDACTED&page=2"
    assert root.attributes["url.query"] == root.inputs["query"]
    assert root.inputs["headers"]["x-auth-token"] == "REDACTED"
    assert root.inputs["headers"]["x-request-id"] == f"{VISIBLE}id"
    assert root.outputs["headers"]["x-auth-token"] == "REDACTED"
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert f"{VISIBLE}form".encode() in blob


def test_multipart_fields_under_denied_names_are_scrubbed(tracer) -> None:
    mw = TracingMiddleware(echo, config={"experiment": "sec", "capture_body": True})

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/upload", data={"user": "bob", "password": f"{SECRET}1"},
                                     files={"client_secret": ("s.txt", f"{SECRET}2".encode()),
                                            "note": ("n.txt", f"{VISIBLE}part".encode())})

    response = asyncio.run(post())
    assert f"{SECRET}1".encode() in response.content  # the echo is the app's, untouched
    body = only_trace("sec").data.spans[0].inputs["body"]
    assert SECRET not in body
    assert 'name="password"\r\n\r\nREDACTED\r\n' in body
    assert f"{VISIBLE}part" in body and "bob" in body
    assert SECRET.encode() not in store_bytes(tracer)


def test_every_header_captured_still_loses_the_secret_ones(tracer) -> None:
    mw = TracingMiddleware(echo, config={"experiment": "sec", "capture_headers": ["*"]})
    call(mw, headers=[(b"X-Auth-Token", f"{SECRET}1".encode()),
                      (b"x-amz-security-token", f"{SECRET}2".encode()),
                      (b"X-CSRFToken", f"{SECRET}3".encode()),
                      (b"x-forwarded-for", f"{SECRET}4".encode()),
                      (b"x-request-id", f"{VISIBLE}header".encode())])
    root = only_trace("sec").data.spans[0]
    headers = root.inputs["headers"]
    assert {headers[n] for n in ("x-auth-token", "x-amz-security-token", "x-csrftoken",
                                 "x-forwarded-for")} == {"REDACTED"}
    assert headers["x-request-id"] == f"{VISIBLE}header"
    assert root.outputs["headers"]["x-auth-token"] == "REDACTED"
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert f"{VISIBLE}header".encode() in blob


@pytest.mark.parametrize(("query", "stored"), [
    pytest.param("auth_token=s&q=cats", "auth_token=REDACTED&q=cats", id="auth_token"),
    pytest.param("accessToken=s", "accessToken=REDACTED", id="camelCase"),
    pytest.param("X-Amz-Security-Token=s", "X-Amz-Security-Token=REDACTED", id="kebab"),
    pytest.param("user%5Fpassword=s", "user%5Fpassword=REDACTED", id="percent-encoded name"),
    pytest.param("max_tokens=5&author=me", "max_tokens=5&author=me", id="not secrets"),
])
def test_query_keys_are_matched_by_their_words(hello_app: Any, query: str, stored: str) -> None:
    call(TracingMiddleware(hello_app), query=query.encode())
    assert only_trace().data.spans[0].inputs["query"] == stored


# -- real servers -------------------------------------------------------------------------------
@pytest.fixture
def uvicorn_url() -> Iterator[str]:
    app = FastAPI()

    @app.post("/login")
    async def login(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json",
                        headers={"x-auth-token": f"{SECRET}response"})

    app.add_middleware(TracingMiddleware, config={
        "experiment": "sec", "capture_body": True, "capture_headers": ["*"]})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-redact", daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="uvicorn start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture
def werkzeug_url() -> Iterator[str]:
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, WSGITracingMiddleware(wsgi_echo, config={
        "experiment": "sec", "capture_body": True, "capture_headers": ["*"]}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug-redact", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(30)


def test_secrets_sent_to_real_servers_never_reach_the_store(
        tracer, uvicorn_url: str, werkzeug_url: str) -> None:
    doc = json.dumps({"user": "bob", "auth": {"password": f"{SECRET}1"},
                      "note": f"{VISIBLE}uvicorn"}).encode()
    form = f"user=bob&client_secret={SECRET}2&note={VISIBLE}werkzeug".encode()
    with httpx.Client(timeout=30) as client:
        json_reply = client.post(f"{uvicorn_url}/login?auth_token={SECRET}3", content=doc,
                                 headers={"content-type": "application/json",
                                          "X-Auth-Token": f"{SECRET}4"})
        form_reply = client.post(f"{werkzeug_url}/login?accessToken={SECRET}5", content=form,
                                 headers={"content-type": "application/x-www-form-urlencoded",
                                          "X-Session-Token": f"{SECRET}6"})
    assert json_reply.content == doc and form_reply.content == form
    assert json_reply.headers["x-auth-token"] == f"{SECRET}response"

    bodies = sorted(((t.data.spans[0].inputs["body"], t.data.spans[0].outputs["body"])
                     for t in traces_of("sec")), key=str)
    assert bodies == sorted([
        ({"user": "bob", "auth": "REDACTED", "note": f"{VISIBLE}uvicorn"},) * 2,
        (f"user=bob&client_secret=REDACTED&note={VISIBLE}werkzeug",) * 2,
    ], key=str)
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert f"{VISIBLE}uvicorn".encode() in blob and f"{VISIBLE}werkzeug".encode() in blob


@pytest.mark.slow
def test_body_secrets_never_reach_the_mlflow_server(mlflow_tracking) -> None:
    server = mlflow_tracking
    tag = uuid.uuid4().hex[:8]
    mw = TracingMiddleware(echo, config={"experiment": f"sec-{tag}", "capture_body": True})
    raw = json.dumps({"messages": [{"role": "user", "apiKey": f"{SECRET}{tag}"}],
                      "note": f"{VISIBLE}{tag}"}).encode()
    assert call(mw, "POST", "/chat", chunks=[raw], headers=JSON).body == raw
    assert routetrace.flush(timeout=60)
    # read back through the server's API
    (trace,) = routetrace.search_traces(f"sec-{tag}", return_type="list")
    assert trace.data.spans[0].inputs["body"]["messages"] == [
        {"role": "user", "apiKey": "REDACTED"}]
    blob = b"".join(p.read_bytes() for p in server.root.rglob("*") if p.is_file())
    assert f"{VISIBLE}{tag}".encode() in blob
    assert f"{SECRET}{tag}".encode() not in blob


# -- the route table --------------------------------------------------------------------------
def test_route_table_extends_and_reduces_the_list_per_route() -> None:
    mw = TracingMiddleware(echo, config={
        "experiment": "sec", "capture_body": True, "redact_keys": ["ssn"],
        "routes": [{"path": "/debug/**", "experiment": "debug", "safe_keys": ["session_id"],
                    "redact_keys": ["internal_note"]}]})
    doc = {"session_id": "sid", "customer_ssn": "123", "internal_note": "n", "password": "p"}
    call(mw, "POST", "/debug/1", chunks=[json.dumps(doc).encode()], headers=JSON)
    call(mw, "POST", "/other", chunks=[json.dumps(doc).encode()], headers=JSON)

    debug = only_trace("debug").data.spans[0].inputs["body"]
    assert debug == {"session_id": "sid", "customer_ssn": "REDACTED",
                     "internal_note": "REDACTED", "password": "REDACTED"}
    other = only_trace("sec").data.spans[0].inputs["body"]
    assert other == {"session_id": "REDACTED", "customer_ssn": "REDACTED",
                     "internal_note": "n", "password": "REDACTED"}


# -- property: a secret under any denied key, anywhere in a JSON body --------------------------
PREFIXES = ("user", "x", "new", "db", "old")
SUFFIXES = ("id", "value", "confirmation", "hash", "2")
STYLES = {
    "snake": lambda ws: "_".join(ws),
    "kebab": lambda ws: "-".join(ws),
    "dotted": lambda ws: ".".join(ws),
    "upper": lambda ws: "_".join(ws).upper(),
    "header": lambda ws: "-".join(w.capitalize() for w in ws),
    "camel": lambda ws: ws[0] + "".join(w.capitalize() for w in ws[1:]),
    "pascal": lambda ws: "".join(w.capitalize() for w in ws),
}


@st.composite
def denied_keys(draw: Any) -> str:
    entry = re.findall(r"[a-z0-9]+", draw(st.sampled_from(SENTRY_DENYLIST)).lower())
    if len(entry) == 1 and draw(st.booleans()):
        entry = [draw(st.sampled_from(PREFIXES)) + entry[0]]  # glued: "newpassword"
    before = draw(st.lists(st.sampled_from(PREFIXES), max_size=2))
    after = draw(st.lists(st.sampled_from(SUFFIXES), max_size=1))
    parts = [*before, *entry, *after]
    style = draw(st.sampled_from(sorted(STYLES)))
    if style in ("camel", "pascal"):
        # camelCase cannot write two one-letter words in a row ("x", "x" -> "XX" reads as one
        # word): no key names a secret that way, so the property does not ask for it.
        parts = [w for i, w in enumerate(parts) if not (i and len(w) == len(parts[i - 1]) == 1)]
    return STYLES[style](parts)


benign_keys = st.sampled_from(["name", "q", "items", "data", "messages", "content", "role",
                               "max_tokens", "n", "author", "tokenizer"])
benign = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(benign_keys, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def secret_documents(draw: Any) -> Any:
    secret = SECRET + draw(st.text(alphabet="0123456789abcdef", min_size=6, max_size=6))
    value = draw(st.sampled_from([
        secret, f"Bearer {secret}", [secret], {"value": secret, "kind": "k"}, [[{"a": secret}]],
    ]))
    node: Any = {**draw(st.dictionaries(benign_keys, benign, max_size=3)),
                 draw(denied_keys()): value}
    for in_dict, key, sibling in draw(st.lists(st.tuples(st.booleans(), benign_keys, benign),
                                               max_size=5)):
        if in_dict:
            node = {"sibling": sibling, key: node}
        else:
            at = draw(st.integers(0, 2))
            node = [sibling] * at + [node] + [sibling] * (2 - at)
    return node


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=secret_documents())
def test_a_secret_under_any_denied_key_never_reaches_the_store(tracer, doc: Any) -> None:
    marker = f"{VISIBLE}{uuid.uuid4().hex}"
    doc = {**doc, "visible": marker} if isinstance(doc, dict) else [*doc, {"visible": marker}]
    raw = json.dumps(doc).encode()
    mw = TracingMiddleware(echo, config={"experiment": "prop", "capture_body": True,
                                         "capture_headers": ["*"]})
    sent = call(mw, "POST", "/p", chunks=[raw], headers=JSON)
    assert sent.body == raw

    trace = routetrace.get_trace(sent.header(b"x-trace-id").decode()) \
        if routetrace.flush(timeout=30) else None
    assert trace is not None
    root = trace.data.spans[0]
    assert SECRET not in json.dumps([root.inputs, root.outputs, root.attributes])
    assert marker in json.dumps(root.inputs)
    assert all(SECRET not in json.dumps(t.data.spans[0].inputs) for t in traces_of("prop"))
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert marker.encode() in blob


# -- the scrubbers themselves ----------------------------------------------------------------
def test_a_body_nested_past_the_recursion_limit_is_stored_as_scrubbed_text(tracer) -> None:
    raw = ('[{"a": ' * 5000 + f'{{"password": "{SECRET}1", "note": "{VISIBLE}deep"}}'
           + "}]" * 5000).encode()
    mw = TracingMiddleware(echo, config={"experiment": "sec", "capture_body": True})
    assert call(mw, "POST", "/deep", chunks=[raw], headers=JSON).body == raw
    body = only_trace("sec").data.spans[0].inputs["body"]
    assert body == raw.decode().replace(f"{SECRET}1", "REDACTED")
    blob = store_bytes(tracer)
    assert SECRET.encode() not in blob
    assert f"{VISIBLE}deep".encode() in blob


@pytest.mark.parametrize(("text", "scrubbed"), [
    pytest.param('{"a": 1, "pass\\u0077ord": "s", "b": [2]}',
                 '{"a": 1, "pass\\u0077ord": "REDACTED", "b": [2]}', id="escaped key"),
    pytest.param('{"token": {"a": [1, 2]}, "b": "c"}', '{"token": "REDACTED", "b": "c"}',
                 id="object value"),
    pytest.param('{"n": "x", "secret": {"a": [1, ', '{"n": "x", "secret": "REDACTED"',
                 id="cut inside the value"),
    pytest.param('{"note": "say \\"password\\": here", "api',
                 '{"note": "say \\"password\\": here", "api', id="cut inside a key"),
])
def test_json_text_is_scrubbed_key_by_key(text: str, scrubbed: str) -> None:
    from routetrace.middleware.redact import scrub_text
    from routetrace.routing.scrub import DEFAULT_POLICY

    assert scrub_text(text, "application/json", DEFAULT_POLICY) == scrubbed


def test_multipart_parts_with_an_empty_or_bare_name_are_judged_by_it() -> None:
    from routetrace.middleware.redact import scrub_text
    from routetrace.routing.scrub import DEFAULT_POLICY

    text = ('--b\r\nContent-Disposition: form-data; name=""\r\n\r\nkept\r\n'
            '--b\r\nContent-Disposition: form-data; name=apiKey\r\n\r\ngone\r\n--b--\r\n')
    assert scrub_text(text, 'multipart/form-data; boundary="b"', DEFAULT_POLICY) == (
        '--b\r\nContent-Disposition: form-data; name=""\r\n\r\nkept\r\n'
        '--b\r\nContent-Disposition: form-data; name=apiKey\r\n\r\nREDACTED\r\n--b--\r\n')


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          ""])
def test_json_sent_under_another_content_type_is_scrubbed_as_json(
        content_type: str) -> None:
    mw = TracingMiddleware(echo, config={"capture_body": True})
    raw = f'  {{"user": "bob", "password": "{SECRET}1"}}'.encode()
    call(mw, "POST", "/x", chunks=[raw], headers=[(b"content-type", content_type.encode())])
    assert only_trace().data.spans[0].inputs["body"] == '  {"user": "bob", "password": "REDACTED"}'


def test_tables_with_equal_key_lists_share_one_header_filter() -> None:
    from routetrace.middleware import headers as capture

    for _ in range(20):
        mw = TracingMiddleware(echo, config={"redact_keys": ["ssn"], "capture_headers": ["*"]})
        call(mw, headers=[(b"x-ssn", b"1")])
    before = len(capture._filters)
    for _ in range(20):
        mw = TracingMiddleware(echo, config={"redact_keys": ["ssn"], "capture_headers": ["*"]})
        call(mw, headers=[(b"x-ssn", b"1")])
    assert len(capture._filters) == before
    assert {t.data.spans[0].inputs["headers"]["x-ssn"] for t in traces_of()} == {"REDACTED"}
