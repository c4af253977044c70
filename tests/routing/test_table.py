from __future__ import annotations

import pytest

from routetrace.core.destination import Experiment
from routetrace.routing import RouteTable, from_mapping
from routetrace.routing.table import ALWAYS_REDACTED_HEADERS

TABLE = {
    "experiment": "web",
    "exclude": ["/healthz", "/static/*"],
    "routes": [
        {"path": "/math/{op}", "methods": ["POST"], "experiment": "math"},
        {"path": "/chat/admin/**", "enabled": False},
        {"path": "/chat/**", "experiment": "chat"},
        {"path": "/math/{op}", "experiment": "math-other-methods"},
        {"path": "/items", "methods": ["get"], "experiment": "items"},
    ],
}


@pytest.mark.parametrize(
    ("method", "path", "experiment"),
    [
        pytest.param("POST", "/math/add", "math", id="methods match"),
        pytest.param("GET", "/math/add", "math-other-methods", id="method falls through"),
        pytest.param("GET", "/chat/1", "chat", id="glob"),
        pytest.param("GET", "/chat/admin/x", None, id="disabled rule shadows later rules"),
        pytest.param("GET", "/healthz", None, id="excluded"),
        pytest.param("POST", "/static/app.js", None, id="excluded glob, any method"),
        pytest.param("HEAD", "/items", "items", id="HEAD follows GET"),
        pytest.param("POST", "/items", "default", id="unmatched method: default"),
        pytest.param("GET", "/unknown", "default", id="no rule: default"),
    ],
)
def test_first_match_wins(method: str, path: str, experiment: str | None) -> None:
    table = from_mapping(TABLE)
    rule = table.match(path, method)
    if experiment is None:
        assert rule is None
    elif experiment == "default":
        assert rule is table.default_rule
        assert rule.is_default
    else:
        assert rule is not None
        assert rule.experiment == Experiment(name=experiment)


def test_explain_match_agrees_with_match() -> None:
    table = from_mapping(TABLE)
    for method, path in [("POST", "/math/add"), ("GET", "/math/x"), ("GET", "/chat/1"),
                         ("GET", "/healthz"), ("GET", "/nope"), ("HEAD", "/items")]:
        found = table.explain_match(path, method)
        assert found.rule is table.match(path, method) or (
            found.rule is not None and not found.rule.enabled
        )
    assert table.explain_match("/math/add", "POST").params == {"op": "add"}
    assert table.explain_match("/healthz", "GET").excluded_by == "/healthz"


def test_empty_table_traces_everything() -> None:
    table = RouteTable()
    assert table.match("/anything", "GET") is table.default_rule
    assert table.trace_id_header == "x-trace-id"


def test_table_is_immutable() -> None:
    table = from_mapping(TABLE)
    with pytest.raises(AttributeError, match="immutable"):
        table.rules = ()  # type: ignore[misc]


def test_credentials_are_always_redacted() -> None:
    table = from_mapping({"redact_headers": ["x-custom"]})
    assert table.redact_headers >= ALWAYS_REDACTED_HEADERS
    assert "x-custom" in table.redact_headers
    assert {"token", "password", "api_key", "secret"} <= table.redact_query


def test_rule_tags_and_route_tag() -> None:
    table = from_mapping({"routes": [{"path": "/chat/**", "tags": {"team": "x", "n": 1,
                                                                   "b": True}}]})
    rule = table.match("/chat/1", "GET")
    assert rule is not None
    assert rule.trace_tags == {"route": "/chat/**", "team": "x", "n": "1", "b": "true"}
    assert table.default_rule.trace_tags == {}


def test_fifty_rule_table_matches_fast() -> None:
    """Matching is one regex call; a generous bound that still catches a linear scan of
    Python-level rule objects (the benchmark has the real figure)."""
    import timeit

    routes = [{"path": f"/api/v1/service{i}/{{item}}"} for i in range(49)]
    routes.append({"path": "/math/{op}", "methods": ["POST"]})
    table = from_mapping({"routes": routes})
    number = 20_000
    best = min(timeit.repeat(lambda: table.match("/math/add", "POST"), number=number,
                             repeat=5)) / number
    assert best < 20e-6
