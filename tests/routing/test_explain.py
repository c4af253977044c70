from __future__ import annotations

from routetrace.routing import describe, explain, from_mapping

TABLE = from_mapping({
    "experiment": "web", "service_name": "api", "exclude": ["/healthz"],
    "routes": [
        {"path": "/math/{op}", "methods": ["POST"], "experiment": "math-agent",
         "timeout_seconds": 60, "capture_body": 1024, "tags": {"team": "m"}},
        {"path": "/chat/**", "experiment": "chat-agent", "sample_rate": 0.5},
        {"path": "/internal/**", "enabled": False},
    ],
})


def test_describe_lists_every_rule_in_order() -> None:
    text = describe(TABLE)
    assert text.index("/math/{op}") < text.index("/chat/**") < text.index("/internal/**")
    assert "default: experiment web (the table's default)" in text
    assert "exclude (never traced): /healthz" in text
    assert "timeout_seconds: 60" in text
    assert "sample_rate: 0.5" in text
    assert "enabled: false" in text
    assert "authorization" in text


def test_explain_a_matching_request() -> None:
    text = explain(TABLE, "/math/add", "post")
    assert "POST /math/add" in text
    assert "matches rule [0] '/math/{op}'" in text
    assert "op='add'" in text
    assert "trace goes to experiment math-agent" in text
    assert "span name: POST /math/{op}" in text


def test_explain_other_outcomes() -> None:
    assert "excluded by '/healthz'" in explain(TABLE, "/healthz", "GET")
    assert "the rule is disabled" in explain(TABLE, "/internal/x", "GET")
    text = explain(TABLE, "/math/add", "GET")  # the method does not match: default
    assert "no rule matches" in text
    assert "experiment web" in text
    assert "50% of requests" in explain(TABLE, "/chat/1", "GET")


def test_explain_without_a_default_names_the_environment() -> None:
    text = explain(from_mapping({}), "/x", "GET")
    assert "experiment Default (no experiment in the table; from the environment)" in text


def test_describe_shows_the_secret_keys_added_and_made_safe() -> None:
    table = from_mapping({"redact_keys": ["ssn"], "routes": [
        {"path": "/a", "safe_keys": ["session_id"]}, {"path": "/b"}]})
    text = describe(table)
    assert "secret keys (bodies, headers, query): 35 default names + ssn\n" in text
    assert "    secret keys: 35 default names + ssn; safe: session_id\n" in text
    assert text.count("secret keys") == 2  # /b uses the table's
