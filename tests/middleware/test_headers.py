"""One pass over a header list keeps, decodes and redacts what a trace stores."""

from __future__ import annotations

from typing import Any

import pytest

from routetrace.middleware.headers import header_filter, scan
from routetrace.routing.scrub import DEFAULT_POLICY


class Undecodable:
    """A header value no code may read: decoding it fails the test."""

    def __str__(self) -> str:
        raise AssertionError("a value that is not stored was decoded")


def test_a_secret_header_is_replaced_before_its_value_is_decoded() -> None:
    spec = header_filter(None, frozenset({"authorization"}), DEFAULT_POLICY)
    first: dict[str, str] = {}
    pairs = [(b"authorization", Undecodable()), (b"x-api-key", Undecodable()), (b"x-a", b"1")]
    assert scan(pairs, spec, first) == {"authorization": "REDACTED", "x-api-key": "REDACTED",
                                        "x-a": "1"}
    assert first == {}


def test_a_header_neither_captured_nor_read_by_an_attribute_is_never_decoded() -> None:
    spec = header_filter(frozenset({"x-a"}), frozenset(), DEFAULT_POLICY)
    first: dict[str, str] = {}
    pairs = [(b"x-b", Undecodable()), (b"host", b"h:8000"), (b"x-a", b"1")]
    assert scan(pairs, spec, first) == {"x-a": "1"}
    assert first == {"host": "h:8000"}


@pytest.mark.parametrize("pairs", [
    pytest.param([(b"Host", b"h:1"), (b"X-Request-Id", b"r1"), (b"x-request-id", b"r2")],
                 id="bytes, any case"),
    pytest.param([("host", "h:1"), ("X-Request-ID", "r1"), ("x-request-id", b"r2")],
                 id="str names"),
    pytest.param([(bytearray(b"host"), b"h:1"), (memoryview(b"x-request-id"), b"r1"),
                  (b"x-request-id", bytearray(b"r2"))], id="bytearray and memoryview"),
])
def test_names_match_whatever_type_and_case_the_server_sends(pairs: list[Any]) -> None:
    spec = header_filter(frozenset({"x-request-id"}), frozenset(), DEFAULT_POLICY)
    first: dict[str, str] = {}
    assert scan(pairs, spec, first) == {"x-request-id": "r1, r2"}
    assert first == {"host": "h:1"}


def test_a_repeated_secret_header_is_stored_as_one_placeholder() -> None:
    spec = header_filter(frozenset({"cookie", "x-a"}), frozenset({"cookie"}), DEFAULT_POLICY)
    pairs = [(b"cookie", b"a=1"), (b"x-a", b"1"), (b"cookie", b"b=2"), (b"x-a", b"2")]
    assert scan(pairs, spec, {}) == {"cookie": "REDACTED", "x-a": "1, 2"}


def test_an_attribute_reads_the_first_value_redacted_when_the_header_is_secret() -> None:
    spec = header_filter(frozenset(), frozenset({"user-agent"}), DEFAULT_POLICY)
    first: dict[str, str] = {}
    pairs = [(b"user-agent", b"a"), (b"content-type", b"text/plain"),
             (b"content-type", b"application/json")]
    assert scan(pairs, spec, first) == {}
    assert first == {"user-agent": "REDACTED", "content-type": "text/plain"}
