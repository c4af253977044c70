"""Route patterns: templates (``/users/{id}``, ``/files/{path:path}``) and globs (``*``, ``**``).

A pattern compiles once into a regular expression source; :mod:`routetrace.routing.table`
joins every rule's source into one alternation so matching a request is a single
``fullmatch`` call, whatever the number of rules.

- ``{name}`` one path segment (no ``/``); ``{name:str}``, ``{name:int}``, ``{name:float}``,
  ``{name:uuid}`` and ``{name:path}`` (the rest of the path, ``/`` included) as Starlette
  spells its convertors.
- ``*`` any characters inside one segment (``/static/*.css``).
- ``**`` a whole segment: any depth, zero segments included (``/chat/**`` matches ``/chat``,
  ``/chat/`` and ``/chat/a/b``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CONVERTORS", "CompiledPattern", "PatternError", "compile_pattern"]

CONVERTORS: dict[str, str] = {
    "str": r"[^/]+",
    "path": r".*",
    "int": r"[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
}

_PARAM = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PatternError(ValueError):
    """A route pattern that cannot be compiled; the message says what is allowed."""


@dataclass(frozen=True)
class CompiledPattern:
    """A pattern as written and the regular expression source it compiled to."""

    pattern: str
    regex: str  # without anchors and without capturing groups (safe to join)
    params: tuple[str, ...]
    is_template: bool  # has {params}: the pattern itself is a good span name

    def matcher(self) -> re.Pattern[str]:
        """A standalone regex with named groups for the params (explain, tests)."""
        source = self.regex
        for name in self.params:
            source = source.replace(f"(?:{_marker(name)}", f"(?P<{name}>", 1)
        return re.compile(source.replace(_MARK_END, ")"), re.DOTALL)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.matcher().fullmatch(path)
        return None if m is None else m.groupdict()


# Param groups are emitted as ``(?:<marker>...)`` with a marker that is an empty lookahead, so
# the joined table regex has no capturing groups and ``matcher()`` can recover named ones.
_MARK_END = "(?#e))"


def _marker(name: str) -> str:
    return f"(?#p:{name})"


def _glob_segment(segment: str, pattern: str) -> str:
    if "**" in segment:
        raise PatternError(
            f"'**' must be a whole path segment (like '/chat/**' or '/a/**/b') in {pattern!r}"
        )
    return "[^/]*".join(re.escape(part) for part in segment.split("*"))


def compile_pattern(pattern: str) -> CompiledPattern:
    """Compile a route pattern; raise :class:`PatternError` saying what is wrong."""
    if not isinstance(pattern, str):
        raise PatternError(f"a route pattern must be a string, not {type(pattern).__name__}")
    if not pattern.startswith("/"):
        raise PatternError(f"a route pattern must start with '/', got {pattern!r}")
    if any(c.isspace() for c in pattern) or "?" in pattern or "#" in pattern:
        raise PatternError(
            f"a route pattern matches the path only: no spaces, '?' or '#', got {pattern!r}"
        )
    params: list[str] = []
    out: list[str] = []
    segments = pattern[1:].split("/")
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == "**":
            # Zero or more segments; the leading "/" is part of the optional group.
            out.append("(?:/.*)?" if i == last else "(?:/[^/]*)*")
            continue
        pieces: list[str] = []
        pos = 0
        for m in _PARAM.finditer(segment):
            pieces.append(_glob_segment(_literal(segment[pos:m.start()], pattern), pattern))
            name, _, convertor = m.group(1).partition(":")
            name, convertor = name.strip(), convertor.strip() or "str"
            if not _IDENTIFIER.match(name):
                raise PatternError(
                    f"'{{{m.group(1)}}}' in {pattern!r}: a parameter needs a name made of "
                    "letters, digits and '_' (like '{id}' or '{path:path}')"
                )
            if name in params:
                raise PatternError(f"parameter {name!r} appears twice in {pattern!r}")
            if convertor not in CONVERTORS:
                allowed = ", ".join(sorted(CONVERTORS))
                raise PatternError(
                    f"unknown convertor {convertor!r} in {pattern!r}; allowed: {allowed}"
                )
            params.append(name)
            pieces.append(f"(?:{_marker(name)}{CONVERTORS[convertor]}{_MARK_END}")
            pos = m.end()
        pieces.append(_glob_segment(_literal(segment[pos:], pattern), pattern))
        out.append("/" + "".join(pieces))
    regex = "".join(out)
    try:
        re.compile(regex)
    except re.error as exc:  # pragma: no cover - escaped input should always compile
        raise PatternError(f"{pattern!r} does not compile: {exc}") from None
    return CompiledPattern(pattern, regex, tuple(params), bool(params))


def _literal(text: str, pattern: str) -> str:
    if "{" in text or "}" in text:
        raise PatternError(
            f"unbalanced '{{' or '}}' in {pattern!r}; parameters look like '{{id}}'"
        )
    return text
