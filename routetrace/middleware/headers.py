"""Which request and response headers a trace keeps, decoded, with credentials replaced.

Runs on the export worker for every request, so each header list is read once: a header that
is neither captured nor used by an attribute is skipped without being decoded, and a secret
one is replaced before its value is ever decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from routetrace.middleware.redact import REDACTED
from routetrace.routing.scrub import KeyPolicy

__all__ = ["HeaderFilter", "Name", "environ_headers", "header_filter", "scan", "text"]

# The headers attributes read (``server.address``, ``user_agent.original``, the body's
# content type), kept whether or not the route table captures them.
_FIRST = frozenset({"host", "user-agent", "content-type"})


class Name(NamedTuple):
    """What a header filter knows of one name it reads."""

    text: str
    secret: bool
    """Its value is replaced, never decoded."""
    captured: bool
    """Stored on the span (the other names read are the ones attributes use)."""
    first: bool
    """One of the names whose first value attributes read."""


class HeaderFilter(NamedTuple):
    """The name sets one route table's header lists come down to, built once per table."""

    keep: dict[Any, Name] | None
    """Names read, as ``str`` and ``bytes``; None when every header is captured."""
    redact: Any
    """``name in redact`` when a kept header's value must be replaced; None when no kept
    header can need it (the usual case: one set lookup a header, nothing more)."""
    wanted: frozenset[str] | None
    """Names captured on the span (``keep`` also holds the ones attributes read)."""


class _SecretNames:
    """``name in redact`` for any header name when every header is captured: the named ones,
    and those the key policy denies (a header is a key like any other)."""

    __slots__ = ("names", "policy")

    def __init__(self, names: frozenset[Any], policy: KeyPolicy) -> None:
        self.names = names
        self.policy = policy

    def __contains__(self, name: Any) -> bool:
        return name in self.names or self.policy.denies(text(name))


_filters: dict[tuple[frozenset[str] | None, frozenset[str], KeyPolicy], HeaderFilter] = {}


def header_filter(wanted: frozenset[str] | None, redact: frozenset[str],
                  policy: KeyPolicy) -> HeaderFilter:
    """The :class:`HeaderFilter` of a rule's ``capture_headers``, the table's
    ``redact_headers`` and the key policy; tables with equal lists share one."""
    found = _filters.get((wanted, redact, policy))
    if found is None:
        redact_any = frozenset(redact) | {n.encode("latin-1") for n in redact}
        if wanted is None:
            found = HeaderFilter(None, _SecretNames(redact_any, policy), None)
        else:
            names = set(wanted) | set(_FIRST)
            secret = {n for n in names if n in redact or policy.denies(n)}
            secret_any = frozenset(secret) | {n.encode("latin-1") for n in secret}
            keep: dict[Any, Name] = {}
            for n in names:
                keep[n] = keep[n.encode("latin-1")] = Name(n, n in secret, n in wanted,
                                                           n in _FIRST)
            found = HeaderFilter(keep, secret_any or None, wanted)
        _filters[(wanted, redact, policy)] = found
    return found


def scan(pairs: Iterable[Any], spec: HeaderFilter, first: dict[str, str], *,
         plain: bool = False) -> dict[str, str]:
    """The captured headers as stored (repeated names joined with ", "), decoded, with
    credentials already replaced; ``first`` gets the first host, user-agent and content-type.

    Names are matched as servers send them (lower-case, as ASGI asks) and lower-cased only
    when they do not match as they are.
    """
    keep, redact, _ = spec
    try:
        if keep is not None:
            return _scan_listed(pairs, keep, first)
        return _scan_all(pairs, redact, first)
    except (TypeError, AttributeError):
        if plain:
            raise
        # Names that are neither bytes nor str: once more, with plain names.
        first.clear()
        return scan([(_plain_name(p[0]), p[1]) for p in pairs], spec, first, plain=True)


def _scan_all(pairs: Iterable[Any], redact: Any, first: dict[str, str]) -> dict[str, str]:
    """:func:`scan` when every header is captured."""
    captured: dict[str, str] = {}
    for pair in pairs:
        name = pair[0].lower()
        # The secret test comes first: a replaced value is never decoded.
        value = REDACTED if name in redact else text(pair[1])
        name = text(name).lower()
        if name in _FIRST and name not in first:
            first[name] = value
        previous = captured.get(name)
        captured[name] = value if previous is None else _joined(previous, value)
    return captured


def _scan_listed(pairs: Iterable[Any], keep: dict[Any, Name],
                 first: dict[str, str]) -> dict[str, str]:
    """:func:`scan` for a filter that lists the names it reads (the usual case): one lookup
    a header tells whether it is read, its name as text and what to do with its value."""
    captured: dict[str, str] = {}
    for pair in pairs:
        found = keep.get(pair[0])
        if found is None:
            found = keep.get(pair[0].lower())
            if found is None:
                continue
        name, secret, wanted, is_first = found
        if secret:  # replaced, never decoded
            value = REDACTED
        else:
            value = pair[1]
            value = value.decode("latin-1") if value.__class__ is bytes else text(value)
        if is_first and name not in first:
            first[name] = value
        if wanted:
            previous = captured.get(name)
            captured[name] = value if previous is None else _joined(previous, value)
    return captured


def _joined(previous: str, value: str) -> str:
    """A repeated header's values, as HTTP joins them; one REDACTED stands for many."""
    if value == REDACTED and previous == REDACTED:
        return previous
    return f"{previous}, {value}"


def _plain_name(name: Any) -> bytes | str:
    if isinstance(name, (bytes, str)):
        return name
    if isinstance(name, (bytearray, memoryview)):
        return bytes(name)
    return str(name)


def text(value: Any) -> str:
    """A header name or value as ``str`` (bytes are latin-1, as HTTP/1.1 defines them)."""
    if value.__class__ is bytes:
        return value.decode("latin-1")
    if value.__class__ is str:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def environ_headers(environ: Any) -> list[tuple[str, str]]:
    """A WSGI environ's request headers as ``(name, value)`` pairs, names lower-case."""
    pairs = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            pairs.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            pairs.append((key.replace("_", "-").lower(), value))
    return pairs
