"""The examples run, and their route table sends each endpoint where the README says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from routetrace.routing import explain, load_file
from tests.conftest import traces_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_example_route_table() -> None:
    table = load_file(EXAMPLES / "routetrace.toml")
    assert "math-agent" in explain(table, "/math/add", "POST")
    assert "chat-agent" in explain(table, "/chat/42", "POST")
    assert "excluded" in explain(table, "/healthz", "GET")
    assert table.match("/slow", "GET").timeout_seconds == 1  # type: ignore[union-attr]


def test_fastapi_example(monkeypatch: pytest.MonkeyPatch, reset_tracer: Any) -> None:
    from starlette.testclient import TestClient

    reset_tracer(MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS="0.1")
    app = load_example("fastapi_app", monkeypatch).app
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/math/add", json={"a": 2, "b": 3}).json()["result"] == 5
        assert client.post("/math/div", json={"a": 1, "b": 0}).status_code == 422
        chat = client.post("/chat/demo", json={"message": "hello there"})
        assert chat.text.endswith("data: [DONE]\n\n")
        assert client.get("/error").status_code == 500
        assert client.get("/slow").status_code == 200
        assert client.get("/healthz").text == "ok"
    math = traces_of("math-agent")
    assert len(math) == 2
    assert {t.data.spans[0].name for t in math} == {"POST /math/{op}"}
    (chat_trace,) = traces_of("chat-agent")
    names = [s.name for s in chat_trace.data.spans]
    assert names[0] == "POST /chat/{conversation}"
    assert "retrieve" in names
    assert "generate" in names
    assert chat_trace.info.tags["conversation"] == "demo"
    web = {t.data.spans[0].name: t for t in traces_of("examples-web")}
    assert set(web) == {"GET /error", "GET /slow"}
    assert web["GET /error"].info.state == "ERROR"
    assert web["GET /slow"].info.trace_metadata["routetrace.aborted"] == "timeout"


def test_flask_example(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_example("flask_app", monkeypatch).app
    client = app.test_client()
    assert client.post("/math/mul", json={"a": 6, "b": 7}).json["result"] == 42
    with client.post("/chat/1", json={"message": "hi"}) as response:
        assert response.data.endswith(b"data: [DONE]\n\n")
    (math,) = traces_of("math-agent")
    assert math.data.spans[0].name == "POST /math/<op>"
    (chat,) = traces_of("chat-agent")
    assert [s.name for s in chat.data.spans] == ["POST /chat/<conversation>", "generate"]
