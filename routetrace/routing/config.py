"""Find and load the route table: ``routetrace.toml``, ``[tool.routetrace]`` or a mapping.

Validation (and its errors naming the file, the line and the key) is
:mod:`routetrace.routing.validate`'s; this module finds the file, reads it, and reports what
stops it from being read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routetrace.routing.lines import LineIndex
from routetrace.routing.table import RouteTable
from routetrace.routing.validate import ROUTE_KEYS, TOP_LEVEL_KEYS, ConfigError, from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["ROUTE_KEYS", "TOP_LEVEL_KEYS", "ConfigError", "from_mapping", "load", "load_file"]

_TOML_LINE = re.compile(r"at line (\d+)")


def load_file(path: str | os.PathLike[str]) -> RouteTable:
    """Load ``routetrace.toml``, or the ``[tool.routetrace]`` table of a ``pyproject.toml``."""
    file = os.fspath(path)
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise ConfigError(_missing(file), file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", file=file) from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("is not UTF-8 text", file=file, line=line) from None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        raise ConfigError(f"invalid TOML: {exc}", file=file,
                          line=int(found.group(1)) if found else None) from None
    if Path(file).name == "pyproject.toml":
        section = data.get("tool", {}).get("routetrace")
        if section is None:
            raise ConfigError("has no [tool.routetrace] table", file=file)
        return from_mapping(section, source=file,
                            _lines=LineIndex(text, ("tool", "routetrace")),
                            _prefix="tool.routetrace")
    return from_mapping(data, source=file, _lines=LineIndex(text))


def _missing(file: str) -> str:
    """Say where a file was looked for: a relative path depends on the server's directory."""
    if os.path.isabs(file):
        return "no such file"
    return (f"no such file in {Path(file).absolute().parent} (a relative path is read from "
            "the working directory: start the server there, or give an absolute path)")


def _pyproject_has_table(path: Path) -> bool:
    try:
        return "routetrace" in tomllib.loads(path.read_text("utf-8")).get("tool", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def load(config: RouteTable | Mapping[str, Any] | str | os.PathLike[str] | None = None,
         *, cwd: str | os.PathLike[str] | None = None) -> RouteTable:
    """The route table for ``config``: a table (returned as is), a mapping, a file path, or
    None to look for one: ``ROUTETRACE_CONFIG``, then ``./routetrace.toml``, then
    ``[tool.routetrace]`` in ``./pyproject.toml``, else the defaults (trace everything)."""
    if isinstance(config, RouteTable):
        return config
    if isinstance(config, Mapping):
        return from_mapping(config)
    if config is not None:
        return load_file(config)
    from routetrace.core.tracer import get_tracer

    explicit = get_tracer().settings.config_path  # ROUTETRACE_CONFIG, read with the rest
    if explicit:
        try:
            return load_file(explicit)
        except ConfigError as exc:
            if exc.problem.startswith("no such file"):
                raise ConfigError(f"{exc.problem} (named by ROUTETRACE_CONFIG)",
                                  file=exc.file) from None
            raise
    base = Path(cwd) if cwd is not None else Path.cwd()
    if (base / "routetrace.toml").is_file():
        return load_file(base / "routetrace.toml")
    if (base / "pyproject.toml").is_file() and _pyproject_has_table(base / "pyproject.toml"):
        return load_file(base / "pyproject.toml")
    return RouteTable()
