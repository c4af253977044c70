from __future__ import annotations

from pathlib import Path

import pytest

from routetrace.routing import ConfigError, load_file
from routetrace.routing.config import from_mapping
from routetrace.routing.scrub import DEFAULT_DENIED_KEYS, DEFAULT_POLICY, KeyPolicy, words

SENTRY_DENYLIST = (  # sentry_sdk.scrubber.DEFAULT_DENYLIST + DEFAULT_PII_DENYLIST
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd",
    "privatekey", "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken",
    "x_forwarded_for", "set_cookie", "cookie", "authorization", "proxy-authorization",
    "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session", "_xsrf", "XSRF-TOKEN",
    "x_real_ip", "ip_address", "remote_addr",
)


def test_the_default_list_holds_all_of_sentrys() -> None:
    assert set(SENTRY_DENYLIST) <= set(DEFAULT_DENIED_KEYS)
    assert all(DEFAULT_POLICY.denies(name) for name in SENTRY_DENYLIST)


@pytest.mark.parametrize(("key", "split"), [
    pytest.param("X-Auth-Token", ["x", "auth", "token"], id="header"),
    pytest.param("authToken", ["auth", "token"], id="camelCase"),
    pytest.param("APIKey", ["api", "key"], id="acronym then word"),
    pytest.param("AUTH.TOKEN", ["auth", "token"], id="upper, dotted"),
    pytest.param("key2", ["key", "2"], id="digits"),
])
def test_words_split_at_separators_and_case_changes(key: str, split: list[str]) -> None:
    assert words(key) == split


@pytest.mark.parametrize(("key", "secret"), [
    pytest.param("X-Auth-Token", True, id="header name"),
    pytest.param("auth_token", True, id="snake_case"),
    pytest.param("authToken", True, id="camelCase"),
    pytest.param("accesstoken", True, id="glued: a word ending in a denied name"),
    pytest.param("userPassword", True, id="a denied word inside"),
    pytest.param("password_confirmation", True, id="a denied word first"),
    pytest.param("X-Api-Key", True, id="a two-word name in a row"),
    pytest.param("aws_secret_access_key", True, id="aws"),
    pytest.param("max_tokens", False, id="tokens is not token"),
    pytest.param("tokenizer", False, id="a word starting with a denied name"),
    pytest.param("author", False, id="author is not auth"),
    pytest.param("key_api", False, id="two-word name out of order"),
    pytest.param("prompt_token_count", False, id="a count of tokens"),
    pytest.param("token_type", False, id="the type of a token"),
    pytest.param("content-type", False, id="content-type"),
    pytest.param("cache_key", False, id="key alone is not a secret"),
])
def test_keys_are_denied_by_their_words(key: str, secret: bool) -> None:
    assert DEFAULT_POLICY.denies(key) is secret


def test_safe_keys_keep_a_key_and_redact_keys_add_names() -> None:
    policy = DEFAULT_POLICY.extended(["ssn"], ["session-id"])
    assert not policy.denies("sessionId") and not policy.denies("SESSION_ID")
    assert policy.denies("user_session")
    assert policy.denies("customerSsn")
    assert not DEFAULT_POLICY.denies("customerSsn")


def test_a_named_key_is_denied_even_when_it_ends_like_a_descriptor() -> None:
    assert KeyPolicy(["token_count"]).denies("token_count")


def test_a_credential_cannot_be_made_safe() -> None:
    with pytest.raises(ValueError, match="password: credentials are always redacted"):
        KeyPolicy(safe=["Password"])


# -- in the route table -----------------------------------------------------------------------
def test_route_table_keys_build_the_table_and_rule_policies() -> None:
    table = from_mapping({"redact_keys": ["ssn"], "safe_keys": ["x-forwarded-for"],
                          "routes": [{"path": "/a"},
                                     {"path": "/b", "safe_keys": ["session_id"]}]})
    assert table.key_policy.denies("ssn") and not table.key_policy.denies("X-Forwarded-For")
    assert table.rules[0].key_policy is None  # the table's applies
    rule_policy = table.rules[1].key_policy
    assert rule_policy is not None
    assert rule_policy.denies("ssn") and not rule_policy.denies("session_id")
    assert not rule_policy.denies("x_forwarded_for")


@pytest.mark.parametrize(("text", "line", "key", "problem"), [
    pytest.param('safe_keys = ["session_id", "Api-Key"]\n', 1, "safe_keys[1]",
                 "'Api-Key' is a credential, always redacted", id="credential made safe"),
    pytest.param('experiment = "x"\nredact_keys = ["ssn", 3]\n', 2, "redact_keys[1]",
                 "must be a string, not an integer", id="not a string"),
    pytest.param('redact_keys = "ssn"\n', 1, "redact_keys", "must be a list of strings",
                 id="not a list"),
    pytest.param('redact_keys = ["--"]\n', 1, "redact_keys[0]", "has no letters or digits",
                 id="no words"),
    pytest.param('[[routes]]\npath = "/a"\n\n[[routes]]\npath = "/b"\nsafe_keys = ["token"]\n',
                 6, "routes[1].safe_keys[0]", "is a credential", id="per route"),
])
def test_bad_key_lists_are_errors_naming_file_line_and_key(
        tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    path = tmp_path / "routetrace.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.line == line and info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}:{line}: {key}: ")
