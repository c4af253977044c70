"""Validate a parsed route table into a :class:`~routetrace.routing.table.RouteTable`.

Validation is strict because a route table is deployment configuration: a typo such as
``experimnet = "chat"`` silently ignored would send a team's traces to the wrong place for
weeks. Every problem raises :class:`ConfigError` naming the file, the line, the key and what is
allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from routetrace.core.destination import Experiment
from routetrace.routing.lines import LineIndex, ToKey
from routetrace.routing.patterns import PatternError, compile_pattern
from routetrace.routing.scrub import ALWAYS_SECRET, DEFAULT_POLICY, KeyPolicy, normalise
from routetrace.routing.table import (
    DEFAULT_BODY_CAP,
    DEFAULT_CAPTURE_HEADERS,
    RouteTable,
    Rule,
)

__all__ = ["ROUTE_KEYS", "TOP_LEVEL_KEYS", "ConfigError", "from_mapping"]

TOP_LEVEL_KEYS = (
    "experiment", "service_name", "capture_headers", "redact_headers", "redact_query",
    "capture_body", "trace_id_header", "exclude", "framework_spans", "redact_keys",
    "safe_keys", "routes",
)
ROUTE_KEYS = (
    "path", "methods", "experiment", "enabled", "sample_rate", "capture_body",
    "capture_headers", "timeout_seconds", "span_type", "tags", "redact_keys", "safe_keys",
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 token (header/method names)


class ConfigError(ValueError):
    """The route table cannot be used. ``str(err)`` is ``file:line: key: what is wrong``."""

    def __init__(self, problem: str, *, file: str, line: int | None = None,
                 key: str | None = None) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.key = key
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class _Validator:
    def __init__(self, file: str, lines: LineIndex | None, prefix: str) -> None:
        self.file = file
        self.lines = lines
        self.prefix = prefix

    def error(self, path: ToKey, problem: str) -> ConfigError:
        line = self.lines.line_of(path) if self.lines else None
        key = self.prefix
        for part in path:
            if isinstance(part, int):
                key += f"[{part}]"
            else:
                key += f".{part}" if key else str(part)
        return ConfigError(problem, file=self.file, line=line, key=key or None)

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], path: ToKey,
                   other: tuple[str, ...] = (), other_hint: str = "") -> None:
        for key in table:
            if key in allowed:
                continue
            problem = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if close:
                problem += f"; did you mean {close[0]!r}?"
            elif key in other:
                problem += f"; {other_hint}"
            problem += f" Allowed keys: {', '.join(allowed)}."
            raise self.error((*path, key), problem)

    # scalar checks
    def string(self, value: Any, path: ToKey, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, not {_kind(value)} ({value!r})")
        if not empty_ok and not value.strip():
            raise self.error(path, "must be a non-empty string")
        return value

    def boolean(self, value: Any, path: ToKey) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, not {_kind(value)} ({value!r})")
        return value

    def number(self, value: Any, path: ToKey, *, low: float, high: float | None = None,
               low_inclusive: bool = True, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise self.error(path, f"must be {what}, not {_kind(value)} ({value!r})")
        if value < low or (not low_inclusive and value == low) or (
            high is not None and value > high
        ):
            raise self.error(path, f"must be {what}, got {value!r}")
        return float(value)

    def cap(self, value: Any, path: ToKey) -> int:
        if isinstance(value, bool):
            return DEFAULT_BODY_CAP if value else 0
        if not isinstance(value, int) or value < 0:
            raise self.error(
                path, "must be true, false or a non-negative number of bytes "
                f"(like 16384), not {value!r}",
            )
        return value

    def strings(self, value: Any, path: ToKey) -> list[str]:
        if not isinstance(value, list):
            raise self.error(path, f"must be a list of strings, not {_kind(value)} ({value!r})")
        for i, item in enumerate(value):
            self.string(item, (*path, i))
        return value

    def header_names(self, value: Any, path: ToKey, *, star: bool) -> frozenset[str] | None:
        names = self.strings(value, path)
        if star and "*" in names:
            if len(names) != 1:
                raise self.error(path, '"*" (every header) cannot be combined with names')
            return None
        for i, name in enumerate(names):
            if not _TOKEN.match(name):
                raise self.error((*path, i), f"{name!r} is not a valid header name")
        return frozenset(n.lower() for n in names)

    def key_names(self, value: Any, path: ToKey, *, safe: bool) -> list[str]:
        names = self.strings(value, path)
        for i, name in enumerate(names):
            key = normalise(name)
            if not key:
                raise self.error((*path, i), f"{name!r} has no letters or digits to match")
            if safe and key in ALWAYS_SECRET:
                raise self.error((*path, i), f"{name!r} is a credential, always redacted; "
                                 "it cannot be a safe key")
        return names

    def key_policy(self, entry: Mapping[str, Any], path: ToKey,
                   base: KeyPolicy) -> KeyPolicy | None:
        """``base`` extended by the entry's ``redact_keys`` and ``safe_keys``; None if none."""
        if "redact_keys" not in entry and "safe_keys" not in entry:
            return None
        return base.extended(
            self.key_names(entry.get("redact_keys", []), (*path, "redact_keys"), safe=False),
            self.key_names(entry.get("safe_keys", []), (*path, "safe_keys"), safe=True))

    def pattern(self, value: Any, path: ToKey) -> str:
        self.string(value, path)
        try:
            compile_pattern(value)
        except PatternError as exc:
            raise self.error(path, str(exc)) from None
        return value

    def experiment(self, value: Any, path: ToKey) -> Experiment:
        return Experiment(name=self.string(value, path).strip())


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def from_mapping(data: Mapping[str, Any], *, source: str = "<mapping>",
                 _lines: LineIndex | None = None, _prefix: str = "") -> RouteTable:
    """Validate a parsed route table (the TOML document as a dict) into a :class:`RouteTable`."""
    v = _Validator(source, _lines, _prefix)
    if not isinstance(data, Mapping):
        raise v.error((), f"the route table must be a table, not {_kind(data)}")
    v.check_keys(data, TOP_LEVEL_KEYS, (), ROUTE_KEYS,
                 "that key belongs inside a [[routes]] table.")
    default_experiment = (
        v.experiment(data["experiment"], ("experiment",)) if "experiment" in data else None
    )
    service_name = v.string(data["service_name"], ("service_name",)) \
        if "service_name" in data else None
    capture_headers = (
        v.header_names(data["capture_headers"], ("capture_headers",), star=True)
        if "capture_headers" in data else frozenset(DEFAULT_CAPTURE_HEADERS)
    )
    redact_headers = v.header_names(data.get("redact_headers", []), ("redact_headers",),
                                    star=False) or frozenset()
    redact_query = frozenset(
        q.lower() for q in v.strings(data.get("redact_query", []), ("redact_query",))
    )
    capture_body = v.cap(data.get("capture_body", False), ("capture_body",))
    key_policy = v.key_policy(data, (), DEFAULT_POLICY) or DEFAULT_POLICY
    trace_id_header = v.string(data.get("trace_id_header", "x-trace-id"),
                               ("trace_id_header",), empty_ok=True).strip().lower()
    if trace_id_header and not _TOKEN.match(trace_id_header):
        raise v.error(("trace_id_header",),
                      f"{trace_id_header!r} is not a valid header name (use \"\" to turn it off)")
    exclude = tuple(
        v.pattern(p, ("exclude", i))
        for i, p in enumerate(v.strings(data.get("exclude", []), ("exclude",)))
    )
    framework_spans = v.boolean(data.get("framework_spans", False), ("framework_spans",))
    routes = data.get("routes", [])
    if not isinstance(routes, list):
        raise v.error(("routes",), "must be an array of tables: write each rule as [[routes]]")
    rules = []
    for i, entry in enumerate(routes):
        path: ToKey = ("routes", i)
        if not isinstance(entry, Mapping):
            raise v.error(path, f"each rule must be a table ([[routes]]), not {_kind(entry)}")
        rules.append(_rule(v, entry, path, i, capture_headers, capture_body, key_policy))
    return RouteTable(
        rules=tuple(rules), exclude=exclude, default_experiment=default_experiment,
        service_name=service_name, capture_headers=capture_headers,
        redact_headers=redact_headers, redact_query=redact_query, capture_body=capture_body,
        trace_id_header=trace_id_header, source=source, framework_spans=framework_spans,
        key_policy=key_policy,
    )


def _rule(v: _Validator, entry: Mapping[str, Any], path: ToKey, index: int,
          capture_headers: frozenset[str] | None, capture_body: int,
          key_policy: KeyPolicy) -> Rule:
    v.check_keys(entry, ROUTE_KEYS, path, TOP_LEVEL_KEYS,
                 "that key is only allowed at the top level of the table.")
    if "path" not in entry:
        raise v.error(path, 'a rule needs a path, like path = "/chat/**"')
    pattern = v.pattern(entry["path"], (*path, "path"))
    methods = None
    if "methods" in entry:
        names = v.strings(entry["methods"], (*path, "methods"))
        if not names:
            raise v.error((*path, "methods"), "must list at least one method, or be left out "
                          "to match every method")
        for j, name in enumerate(names):
            if not _TOKEN.match(name):
                raise v.error((*path, "methods", j), f"{name!r} is not an HTTP method")
        methods = frozenset(n.upper() for n in names)
        if "GET" in methods:
            methods |= {"HEAD"}  # as Starlette and Flask route HEAD to GET handlers
    span_type = v.string(entry["span_type"], (*path, "span_type")).strip() \
        if "span_type" in entry else "UNKNOWN"
    tags: dict[str, str] = {}
    if "tags" in entry:
        raw = entry["tags"]
        if not isinstance(raw, Mapping):
            raise v.error((*path, "tags"), f"must be a table of names to values, like "
                          f"tags = {{ team = \"search\" }}, not {_kind(raw)}")
        for key, value in raw.items():
            if isinstance(value, (dict, list)):
                raise v.error((*path, "tags", key),
                              "a tag value must be a string, number or boolean")
            tags[key] = str(value).lower() if isinstance(value, bool) else str(value)
    timeout = None
    if "timeout_seconds" in entry:
        timeout = v.number(entry["timeout_seconds"], (*path, "timeout_seconds"), low=0,
                           low_inclusive=False, what="a number of seconds greater than 0")
    return Rule(
        pattern=pattern,
        compiled=compile_pattern(pattern),
        methods=methods,
        experiment=v.experiment(entry["experiment"], (*path, "experiment"))
        if "experiment" in entry else None,
        enabled=v.boolean(entry.get("enabled", True), (*path, "enabled")),
        sample_rate=v.number(entry.get("sample_rate", 1.0), (*path, "sample_rate"), low=0,
                             high=1, what="a number between 0 and 1"),
        capture_body=v.cap(entry["capture_body"], (*path, "capture_body"))
        if "capture_body" in entry else capture_body,
        capture_headers=v.header_names(entry["capture_headers"], (*path, "capture_headers"),
                                       star=True)
        if "capture_headers" in entry else capture_headers,
        timeout_seconds=timeout,
        span_type=span_type,
        tags=MappingProxyType(tags),
        index=index,
        line=v.lines.line_of(path) if v.lines else None,
        key_policy=v.key_policy(entry, path, key_policy),
    )
