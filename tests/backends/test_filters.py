"""MLflow's filter syntax, parsed into parameterised SQL: hostile text is a ValueError."""

from __future__ import annotations

import pytest

from routetrace.backends.filters import (
    MAX_CLAUSES,
    FilterClause,
    parse_filter,
    parse_order_by,
    to_sql,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("trace.status = 'ERROR'", [FilterClause("trace", "t.state", "=", "ERROR")],
                     id="status"),
        pytest.param("attributes.status != \"OK\"",
                     [FilterClause("trace", "t.state", "!=", "OK")], id="attributes prefix"),
        pytest.param("trace.timestamp_ms > 1700000000000",
                     [FilterClause("trace", "t.request_time", ">", 1700000000000)], id="number"),
        pytest.param("trace.execution_time_ms <= '25'",
                     [FilterClause("trace", "t.execution_duration", "<=", 25)],
                     id="quoted number"),
        pytest.param("tags.route = '/chat/**' AND trace.name LIKE 'GET%'",
                     [FilterClause("tag", "route", "=", "/chat/**"),
                      FilterClause("trace", "t.name", "LIKE", "GET%")], id="and"),
        pytest.param("tags.`mlflow.traceName` = 'x'",
                     [FilterClause("tag", "mlflow.traceName", "=", "x")], id="backtick key"),
        pytest.param("metadata.session ILIKE 's%'",
                     [FilterClause("metadata", "session", "ILIKE", "s%")], id="metadata ilike"),
        pytest.param("tags.q = 'it''s'", [FilterClause("tag", "q", "=", "it's")],
                     id="doubled quote"),
        pytest.param("  ", [], id="blank"),
    ],
)
def test_parse(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("trace.status = 'OK'; DROP TABLE traces", "invalid filter", id="statement"),
        pytest.param("trace.status = 'OK' OR 1=1", "expected AND", id="or"),
        pytest.param("foo.bar = 'x'", "unknown filter field", id="unknown prefix"),
        pytest.param("trace.password = 'x'", "unknown filter field", id="unknown field"),
        pytest.param("trace.status = ", "incomplete", id="no value"),
        pytest.param("trace.status == 'x'", "expected a quoted string", id="double equals"),
        pytest.param("trace.status = x", "expected a quoted string", id="bare word"),
        pytest.param("trace.timestamp_ms > 'soon'", "compares with a number", id="nan"),
        pytest.param("trace.timestamp_ms LIKE '1%'", "LIKE does not apply", id="like on number"),
        pytest.param("'x' = trace.status", "expected a field", id="value first"),
        pytest.param("trace.status = 'a' AND", "incomplete", id="dangling and"),
        pytest.param("tags.x = 'a' /* */", "invalid filter", id="comment"),
    ],
)
def test_hostile_or_malformed_filters_are_value_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_filter(text)


@pytest.mark.parametrize("number", [
    pytest.param(str(2**63), id="2**63"),
    pytest.param(str(-(2**63) - 1), id="-2**63 - 1"),
    pytest.param("9" * 40, id="40 digits"),
    pytest.param("9" * 5000, id="5000 digits"),
    pytest.param("'" + "9" * 40 + "'", id="quoted"),
    pytest.param("9" * 400 + ".5", id="float past double"),
])
def test_numbers_sqlite_cannot_hold_are_value_errors_naming_the_field(number):
    with pytest.raises(ValueError, match=r"trace\.timestamp_ms at character 22: .* out of range"):
        parse_filter(f"trace.timestamp_ms > {number}")


def test_the_int64_bounds_themselves_are_accepted():
    top, bottom = 2**63 - 1, -(2**63)
    assert parse_filter(f"trace.timestamp_ms <= {top} AND trace.timestamp_ms >= {bottom}") == [
        FilterClause("trace", "t.request_time", "<=", top),
        FilterClause("trace", "t.request_time", ">=", bottom)]


def test_a_number_compared_with_a_tag_stays_text_of_any_length():
    assert parse_filter("tags.n = " + "9" * 5000) == [FilterClause("tag", "n", "=", "9" * 5000)]


def test_more_conditions_than_the_limit_are_a_value_error():
    clause = "trace.status = 'OK'"
    assert len(parse_filter(" AND ".join([clause] * MAX_CLAUSES))) == MAX_CLAUSES
    with pytest.raises(ValueError, match=f"too many conditions.*more than {MAX_CLAUSES}"):
        parse_filter(" AND ".join([clause] * (MAX_CLAUSES + 1)))


def test_sql_has_only_placeholders_for_values():
    clauses = parse_filter("tags.route = 'x\\' OR 1=1 --' AND trace.status = 'ERROR'")
    sql, params = to_sql(clauses)
    assert "OR 1=1" not in sql and "ERROR" not in sql
    assert params == ["route", "x' OR 1=1 --", "ERROR"]


def test_order_by():
    assert parse_order_by(None) == "t.request_time DESC, t.trace_id DESC"
    assert parse_order_by(["execution_time_ms ASC"]).startswith("t.execution_duration ASC")
    assert parse_order_by(["trace.timestamp_ms desc"]).startswith("t.request_time DESC")
    with pytest.raises(ValueError, match="invalid order_by"):
        parse_order_by(["1; DROP TABLE traces"])
    with pytest.raises(ValueError, match="cannot order by"):
        parse_order_by(["password"])
    with pytest.raises(ValueError, match="direction"):
        parse_order_by(["timestamp_ms SIDEWAYS"])
