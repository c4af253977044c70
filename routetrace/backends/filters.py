"""MLflow's trace filter syntax, parsed into parameterised SQL.

Supported: ``trace.status``, ``trace.timestamp_ms``, ``trace.execution_time_ms``,
``trace.name``, ``trace.run_id``, ``tags.<key>``, ``metadata.<key>`` (also
``request_metadata.<key>``; ``attributes.`` works as ``trace.``), compared with ``=``, ``!=``,
``<``, ``>``, ``<=``, ``>=``, ``LIKE``, ``ILIKE`` and joined by ``AND``. Keys with dots or
spaces are quoted with backticks: ``tags.`mlflow.traceName` = 'x'``.

The filter text never reaches SQL: it is tokenised, every field is looked up in a fixed table,
and values travel as bound parameters. Anything else is a ``ValueError`` that says where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_CLAUSES", "FilterClause", "parse_filter", "parse_order_by", "to_sql"]

#: Conditions one filter may AND together. SQLite refuses deeper expression trees (1000 by
#: default) with an error that names no part of the filter; this limit names it first.
MAX_CLAUSES = 200
# Numbers are stored as SQLite INTEGER (64-bit signed); a larger one cannot be bound.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

# (column, kind) for the fields of the trace row.
_TRACE_FIELDS: dict[str, tuple[str, str]] = {
    "status": ("t.state", "str"),
    "state": ("t.state", "str"),
    "timestamp_ms": ("t.request_time", "num"),
    "timestamp": ("t.request_time", "num"),
    "request_time": ("t.request_time", "num"),
    "execution_time_ms": ("t.execution_duration", "num"),
    "execution_duration": ("t.execution_duration", "num"),
    "name": ("t.name", "str"),
    "run_id": ("t.run_id", "str"),
    "request_preview": ("t.request_preview", "str"),
    "response_preview": ("t.response_preview", "str"),
    "trace_id": ("t.trace_id", "str"),
}
_PREFIXES_TRACE = ("trace", "attributes", "attribute", "attr", "info")
_PREFIXES_TAG = ("tags", "tag")
_PREFIXES_META = ("metadata", "request_metadata")
_OPS = ("<=", ">=", "!=", "=", "<", ">", "LIKE", "ILIKE")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_.\-]*|`[^`]+`|"[^"]+"))?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class FilterClause:
    kind: str  # "trace" | "tag" | "metadata"
    key: str  # column for trace fields, tag/metadata key otherwise
    op: str
    value: Any


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(
                f"invalid filter at character {pos + 1}: {text[pos:pos + 20]!r} "
                "(expected e.g. trace.status = 'ERROR' AND tags.route = '/chat/**')"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(), pos))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    quote = token[0]
    body = token[1:-1]
    if quote == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def _field(ident: str, pos: int) -> tuple[str, str, str]:
    prefix, dot, rest = ident.partition(".")
    if rest.startswith(("`", '"')):
        rest = rest[1:-1]
    lowered = prefix.lower()
    if not dot:
        prefix, rest, lowered = "trace", ident, "trace"
    if lowered in _PREFIXES_TAG:
        return "tag", rest, "str"
    if lowered in _PREFIXES_META:
        return "metadata", rest, "str"
    if lowered in _PREFIXES_TRACE:
        field = _TRACE_FIELDS.get(rest.lower())
        if field is not None:
            return "trace", field[0], field[1]
    allowed = ", ".join(
        f"trace.{k}" for k in ("status", "timestamp_ms", "execution_time_ms", "name", "run_id")
    )
    raise ValueError(
        f"unknown filter field {ident!r} at character {pos + 1}; "
        f"use {allowed}, tags.<key> or metadata.<key>"
    )


def parse_filter(text: str | None) -> list[FilterClause]:
    """Parse a filter string into clauses (all joined by AND)."""
    if text is None or not text.strip():
        return []
    toks = _tokens(text)
    clauses: list[FilterClause] = []
    i = 0
    while True:
        if i + 3 > len(toks):
            where = toks[i][2] + 1 if i < len(toks) else len(text)
            raise ValueError(
                f"incomplete filter at character {where}: expected <field> <operator> <value>"
            )
        (k1, v1, p1), (k2, v2, p2), (k3, v3, p3) = toks[i], toks[i + 1], toks[i + 2]
        if k1 != "ident":
            raise ValueError(f"expected a field name at character {p1 + 1}, found {v1!r}")
        kind, key, vtype = _field(v1, p1)
        op = v2.upper() if k2 in ("op", "ident") else ""
        op = "!=" if op == "<>" else op
        if op not in _OPS:
            raise ValueError(
                f"expected an operator at character {p2 + 1}, found {v2!r}; "
                "use =, !=, <, >, <=, >=, LIKE or ILIKE"
            )
        if k3 == "string":
            value: Any = _unquote(v3)
        elif k3 == "number":
            value = v3
        else:
            raise ValueError(
                f"expected a quoted string or a number at character {p3 + 1}, found {v3!r}"
            )
        if vtype == "num":
            if op in ("LIKE", "ILIKE"):
                raise ValueError(f"{v1} is a number: LIKE does not apply")
            value = _number(v1, value, p3)
        if len(clauses) == MAX_CLAUSES:
            raise ValueError(
                f"too many conditions in the filter: more than {MAX_CLAUSES} joined by AND "
                f"(the one at character {p1 + 1} is past the limit)"
            )
        clauses.append(FilterClause(kind, key, op, value))
        i += 3
        if i == len(toks):
            return clauses
        kind_and, word, pos = toks[i]
        if kind_and != "ident" or word.upper() != "AND":
            raise ValueError(
                f"expected AND at character {pos + 1}, found {word!r} (only AND is supported)"
            )
        i += 1


def _number(field: str, text: str, pos: int) -> int | float:
    """A numeric field's value, refused when SQLite could not compare it as stored."""
    shown = text if len(text) <= 30 else f"{text[:12]}…{text[-6:]} ({len(text)} characters)"
    digits = text.strip().lstrip("+-").split(".")[0].lstrip("0")
    if len(digits) > 19:  # also spares int() a conversion of thousands of digits
        raise ValueError(f"{field} at character {pos + 1}: {shown} is out of range "
                         f"(a 64-bit integer, {_INT_MIN} to {_INT_MAX})")
    try:
        value: int | float = float(text) if "." in text else int(text)
    except ValueError:
        raise ValueError(f"{field} compares with a number, not {shown!r}") from None
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"{field} at character {pos + 1}: {shown} is out of range "
                         f"(a 64-bit integer, {_INT_MIN} to {_INT_MAX})")
    return value


def _condition(op: str, lhs: str, value: Any) -> tuple[str, Any]:
    if op == "LIKE":  # SQLite's LIKE ignores case; MLflow's does not: GLOB keeps case.
        return f"{lhs} GLOB ?", _like_to_glob(value)
    if op == "ILIKE":
        return f"LOWER({lhs}) LIKE LOWER(?)", value
    return f"{lhs} {op} ?", value


def to_sql(clauses: list[FilterClause]) -> tuple[str, list[Any]]:
    """A ``WHERE`` fragment (without the word) over ``traces t`` and its parameters."""
    parts: list[str] = []
    params: list[Any] = []
    for c in clauses:
        if c.kind == "trace":
            sql, value = _condition(c.op, c.key, c.value)
            parts.append(sql)
            params.append(value)
        elif c.kind == "tag" and c.key == "mlflow.traceName":  # stored as the name column
            sql, value = _condition(c.op, "t.name", c.value)
            parts.append(sql)
            params.append(value)
        else:
            table = "trace_tags" if c.kind == "tag" else "trace_metadata"
            cond, value = _condition(c.op, "x.value", c.value)
            parts.append(
                f"EXISTS (SELECT 1 FROM {table} x WHERE x.trace_id = t.trace_id "
                f"AND x.key = ? AND {cond})"
            )
            params.extend([c.key, value])
    return " AND ".join(parts), params


def _like_to_glob(pattern: str) -> str:
    """SQL LIKE is case-insensitive in SQLite; MLflow's LIKE is case-sensitive: use GLOB."""
    out = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)


_ORDER_FIELDS = {
    "timestamp_ms": "t.request_time",
    "timestamp": "t.request_time",
    "request_time": "t.request_time",
    "execution_time_ms": "t.execution_duration",
    "execution_duration": "t.execution_duration",
    "status": "t.state",
    "state": "t.state",
    "name": "t.name",
    # The rest of the keys MLflow's search_traces orders by (SearchTraceUtils).
    "experiment_id": "t.experiment_id",
    "execution_time": "t.execution_duration",
    "end_time": "(t.request_time + t.execution_duration)",
    "end_time_ms": "(t.request_time + t.execution_duration)",
    "request_id": "t.trace_id",
    "trace_id": "t.trace_id",
    "run_id": "t.run_id",
}


def parse_order_by(order_by: list[str] | None) -> str:
    """``["timestamp_ms DESC", ...]`` into an ``ORDER BY`` list of whitelisted columns."""
    if not order_by:
        return "t.request_time DESC, t.trace_id DESC"
    terms = []
    for item in order_by:
        words = item.split()
        if not words or len(words) > 2:
            raise ValueError(f"invalid order_by {item!r}; use e.g. 'timestamp_ms DESC'")
        name = words[0].split(".", 1)[-1] if "." in words[0] else words[0]
        column = _ORDER_FIELDS.get(name.lower())
        if column is None:
            raise ValueError(
                f"cannot order by {words[0]!r}; use one of {', '.join(sorted(_ORDER_FIELDS))}"
            )
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise ValueError(f"invalid order direction {words[1]!r}; use ASC or DESC")
        terms.append(f"{column} {direction}")
    terms.append("t.trace_id DESC")
    return ", ".join(terms)
