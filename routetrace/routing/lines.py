"""Where each key of a route table file was written, for errors that name the line.

``tomllib`` reports no positions for values it parsed, so :class:`LineIndex` scans the text
once to find the line each table and key was written on.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LineIndex", "ToKey"]

ToKey = tuple[Any, ...]
"""A key's path in the document: ``("routes", 2, "experiment")``."""

_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?\Z")
_KEY = re.compile(r"""\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*=""")  # noqa: E501
_DOTTED = re.compile(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|\Z)""")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _DOTTED.findall(dotted)]


class LineIndex:
    """Line numbers of tables and keys, by their path (``("routes", 2, "experiment")``).

    A heuristic scanner, not a TOML parser: it only has to be right for files tomllib already
    accepted, and it falls back to the nearest enclosing table when a key sits inside an
    inline table or a multi-line value.
    """

    def __init__(self, text: str, prefix: tuple[str, ...] = ()) -> None:
        self.lines: dict[ToKey, int] = {}
        arrays: dict[tuple[str, ...], int] = {}
        section: ToKey = ()
        multiline: str | None = None
        for lineno, line in enumerate(text.splitlines(), 1):
            if multiline is not None:
                if line.count(multiline) % 2 == 1:
                    multiline = None
                continue
            header = _HEADER.match(line)
            if header:
                name = tuple(_parts(header.group(2)))
                if header.group(1) == "[[":
                    arrays[name] = arrays.get(name, -1) + 1
                path: list[Any] = []
                for i in range(len(name)):
                    path.append(name[i])
                    if name[: i + 1] in arrays:
                        path.append(arrays[name[: i + 1]])
                section = self._strip(tuple(path), prefix)
                self.lines.setdefault(section, lineno)
                continue
            key = _KEY.match(line)
            if key:
                full = (*section, *_parts(key.group(1)))
                self.lines.setdefault(full, lineno)
                rest = line[key.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        multiline = quote

    @staticmethod
    def _strip(path: ToKey, prefix: tuple[str, ...]) -> ToKey:
        if prefix and path[: len(prefix)] == prefix:
            return path[len(prefix):]
        return ("<outside>", *path) if prefix else path

    def line_of(self, path: ToKey) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None
