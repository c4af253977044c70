"""The validated route table and its matcher.

Every ``exclude`` pattern and every rule compile into regular expressions made of
``METHODS PATH`` branches in file order, each a named group, so the first branch that matches
(``Match.lastgroup``) is the first matching rule. A trie on the patterns' literal leading
segments (``/api/v1/...``) picks the one alternation that holds only the rules that can still
match, so a 50-rule table costs about what a 5-rule one does. A bounded dict remembers recent
``METHOD path`` answers: a service's hot paths cost one dict lookup (see
``benchmarks/bench_middleware.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from routetrace.core.destination import Experiment
from routetrace.routing.patterns import CompiledPattern, compile_pattern
from routetrace.routing.scrub import DEFAULT_POLICY, KeyPolicy

__all__ = [
    "ALWAYS_REDACTED_HEADERS",
    "ALWAYS_REDACTED_QUERY",
    "DEFAULT_BODY_CAP",
    "DEFAULT_CAPTURE_HEADERS",
    "Match",
    "RouteTable",
    "Rule",
]

# Credentials never leave the process, whatever the file says.
ALWAYS_REDACTED_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key",
                                     "proxy-authorization"})
ALWAYS_REDACTED_QUERY = frozenset({
    "access_token", "api_key", "apikey", "api-key", "auth", "client_secret", "code",
    "id_token", "key", "passwd", "password", "pwd", "refresh_token", "secret", "session",
    "sessionid", "sig", "signature", "token", "x-api-key",
})
DEFAULT_CAPTURE_HEADERS = ("content-type", "user-agent")
DEFAULT_BODY_CAP = 65536  # what ``capture_body = true`` means
_METHOD_ANY = r"[^ ]*"
_MISS = object()
CACHE_SIZE = 4096  # distinct "METHOD path" keys remembered before the cache starts over


def _literal_prefix(pattern: str) -> tuple[str, ...]:
    """The leading segments of a pattern that are plain text (no parameter, no glob)."""
    out = []
    for segment in pattern[1:].split("/"):
        if "{" in segment or "*" in segment:
            break
        out.append(segment)
    return tuple(out)


def _build_index(branches: list[tuple[tuple[str, ...], str]]) -> list[Any]:
    """A trie on literal leading segments; each node holds one compiled alternation of every
    branch registered at it or above it, in table order (so first-match-wins holds)."""
    root: list[Any] = [{}, None, []]  # children, fullmatch, branch indexes
    for index, (prefix, _) in enumerate(branches):
        node = root
        for segment in prefix:
            node = node[0].setdefault(segment, [{}, None, []])
        node[2].append(index)

    def finish(node: list[Any], inherited: list[int]) -> None:
        own = sorted(inherited + node[2])
        if own:
            source = "|".join(branches[i][1] for i in own)
            node[1] = re.compile(source, re.DOTALL).fullmatch
        for child in node[0].values():
            finish(child, own)
        del node[2]

    finish(root, [])
    return root


@dataclass(frozen=True, eq=False)
class Rule:
    """One ``[[routes]]`` entry, resolved: everything the middleware needs per request.

    ``capture_body`` is a byte cap (0 = off); ``capture_headers`` is a frozenset of lowercase
    names, or None for every header; ``key_policy`` is None when the table's applies.
    """

    pattern: str
    compiled: CompiledPattern | None = None
    methods: frozenset[str] | None = None
    experiment: Experiment | None = None
    enabled: bool = True
    sample_rate: float = 1.0
    capture_body: int = 0
    capture_headers: frozenset[str] | None = frozenset(DEFAULT_CAPTURE_HEADERS)
    timeout_seconds: float | None = None
    span_type: str = "UNKNOWN"
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    index: int | None = None  # position in [[routes]]; None for the table default
    line: int | None = None  # line of the rule in its file, when known
    key_policy: KeyPolicy | None = None  # the rule's own redact_keys / safe_keys

    @property
    def is_default(self) -> bool:
        """True for the catch-all rule unmatched requests get."""
        return self.index is None

    @property
    def trace_tags(self) -> dict[str, str]:
        base = {} if self.is_default else {"route": self.pattern}
        base.update(self.tags)
        return base

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass(frozen=True)
class Match:
    """What :meth:`RouteTable.explain_match` found: the rule, or the exclude that won."""

    rule: Rule | None  # None when excluded
    excluded_by: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


class RouteTable:
    """An immutable, compiled route table. Build it with :func:`routetrace.routing.load`."""

    __slots__ = (
        "_cache",
        "_depth",
        "_hits",
        "_root",
        "capture_body",
        "capture_headers",
        "default_experiment",
        "default_rule",
        "exclude",
        "framework_spans",
        "key_policy",
        "redact_headers",
        "redact_query",
        "rules",
        "service_name",
        "source",
        "trace_id_header",
    )

    def __init__(
        self,
        *,
        rules: tuple[Rule, ...] = (),
        exclude: tuple[str, ...] = (),
        default_experiment: Experiment | None = None,
        service_name: str | None = None,
        capture_headers: frozenset[str] | None = frozenset(DEFAULT_CAPTURE_HEADERS),
        redact_headers: frozenset[str] = ALWAYS_REDACTED_HEADERS,
        redact_query: frozenset[str] = ALWAYS_REDACTED_QUERY,
        capture_body: int = 0,
        trace_id_header: str = "x-trace-id",
        source: str = "<defaults>",
        framework_spans: bool = False,
        key_policy: KeyPolicy = DEFAULT_POLICY,
    ) -> None:
        self.rules = tuple(rules)
        self.exclude = tuple(exclude)
        self.default_experiment = default_experiment
        self.service_name = service_name
        self.capture_headers = capture_headers
        self.redact_headers = frozenset(redact_headers) | ALWAYS_REDACTED_HEADERS
        self.redact_query = frozenset(redact_query) | ALWAYS_REDACTED_QUERY
        self.key_policy = key_policy  # secret keys in bodies, headers and query strings
        self.capture_body = capture_body
        self.trace_id_header = trace_id_header
        self.source = source
        # FastAPI's own telemetry spans (scope ``fastapi``): left out by default, as MLflow's
        # trace of the same handler has only the user's spans.
        self.framework_spans = framework_spans
        self.default_rule = Rule(
            pattern="", capture_body=capture_body, capture_headers=capture_headers
        )
        branches: list[tuple[tuple[str, ...], str]] = []  # (literal prefix, regex)
        hits: list[Rule | None] = []
        for pattern in self.exclude:
            regex = compile_pattern(pattern).regex
            branches.append((_literal_prefix(pattern),
                             f"(?P<_{len(hits)}>{_METHOD_ANY} {regex})"))
            hits.append(None)
        for rule in self.rules:
            compiled = rule.compiled or compile_pattern(rule.pattern)
            if rule.methods is None:
                methods = _METHOD_ANY
            else:
                methods = "(?:" + "|".join(re.escape(m) for m in sorted(rule.methods)) + ")"
            branches.append((_literal_prefix(rule.pattern),
                             f"(?P<_{len(hits)}>{methods} {compiled.regex})"))
            hits.append(rule if rule.enabled else None)
        self._hits = {f"_{i}": hit for i, hit in enumerate(hits)}
        self._depth = max((len(prefix) for prefix, _ in branches), default=0)
        self._cache: dict[str, Rule | None] = {}
        self._root = _build_index(branches)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_root"):
            raise AttributeError("RouteTable is immutable; load a new one instead")
        object.__setattr__(self, name, value)

    # -- the hot path ----------------------------------------------------------------------
    def match(self, path: str, method: str) -> Rule | None:
        """The rule a request hits, the default rule when none matches, None when it is
        excluded or its rule is disabled (not traced)."""
        key = method + " " + path
        rule = self._cache.get(key, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[return-value]
        rule = self._lookup(key, path)
        cache = self._cache
        if len(cache) >= CACHE_SIZE:
            cache.clear()  # bounded whatever the paths' cardinality; cheaper than LRU upkeep
        cache[key] = rule
        return rule

    def _lookup(self, key: str, path: str) -> Rule | None:
        # Walk the literal leading segments ("/api/v1/...") down the index, then run the one
        # regex that holds every rule that can still match, in file order.
        node = self._root
        if node[0]:
            for segment in path.split("/", self._depth + 1)[1:self._depth + 1]:
                child = node[0].get(segment)
                if child is None:
                    break
                node = child
        regex = node[1]
        if regex is None:
            return self.default_rule
        m = regex(key)
        if m is None:
            return self.default_rule
        return self._hits[m.lastgroup]  # type: ignore[index]

    # -- for humans ------------------------------------------------------------------------
    def explain_match(self, path: str, method: str) -> Match:
        """Like :meth:`match`, with the exclude pattern that won and the path parameters."""
        method = method.upper()
        for pattern in self.exclude:
            if compile_pattern(pattern).match(path) is not None:
                return Match(None, excluded_by=pattern)
        for rule in self.rules:
            compiled = rule.compiled or compile_pattern(rule.pattern)
            params = compiled.match(path)
            if params is not None and rule.allows(method):
                return Match(rule, params=params)
        return Match(self.default_rule)

    def __repr__(self) -> str:
        return f"RouteTable(source={self.source!r}, rules={len(self.rules)}, " \
               f"exclude={len(self.exclude)})"
