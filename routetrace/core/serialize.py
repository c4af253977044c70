"""Turn arbitrary Python values into JSON without ever raising.

Span inputs and outputs are whatever the application passes: pydantic models, dataclasses,
bytes, sets, objects with a broken ``__repr__``. Tracing must record something useful for
each of them and must never raise into the application, so every path ends in a string.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = ["clean", "dumps", "encoder", "loads", "to_jsonable", "truncate"]

_MAX_DEPTH = 20


def _fallback(obj: Any) -> Any:
    # pydantic v2 / v1
    for method in ("model_dump", "dict"):
        fn = getattr(obj, method, None)
        if callable(fn) and not isinstance(obj, type):
            try:
                return fn()
            except Exception:
                break
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        try:
            return dataclasses.asdict(obj)
        except Exception:
            pass
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    try:
        return str(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__qualname__}>"


def encoder(*, separators: tuple[str, str] = (", ", ": "),
            default: Callable[[Any], Any] | None = None,
            allow_nan: bool = True) -> Callable[[Any], str]:
    """A JSON encoder built once and reused: ``ensure_ascii`` off, no circular check (the
    callers catch the ``RecursionError`` a cycle ends in).

    ``JSONEncoder.encode`` builds its C encoder anew on every call, which costs about as much
    as encoding a small dict; the worker encodes a few values a trace.
    """
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=separators, default=default,
                                allow_nan=allow_nan, check_circular=False).encode
    item_separator, key_separator = separators
    encode = make(None, default, json.encoder.encode_basestring, None, key_separator,
                  item_separator, False, False, allow_nan)

    def run(value: Any) -> str:
        return "".join(encode(value, 0))

    return run


_encode = encoder(default=_fallback, allow_nan=False)


def clean(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (a server's ``surrogateescape`` decoding of
    non-UTF-8 bytes) become backslash escapes, which every store and wire format accepts."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def dumps(value: Any) -> str:
    """JSON text for ``value`` (valid UTF-8); never raises."""
    try:
        text = _encode(value)
        if text.isascii() or clean(text) is text:
            return text
        # Lone surrogates inside strings: store them as visible backslash escapes rather
        # than JSON \u escapes, which would decode back into invalid text.
        return _encode(to_jsonable(value))
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False)
    except Exception:
        try:
            return json.dumps(repr(value))
        except Exception:
            return json.dumps(f"<unrepresentable {type(value).__qualname__}>")


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A structure of JSON types for ``value``, cutting cycles and deep nesting."""
    if isinstance(value, str):
        return clean(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth > _MAX_DEPTH:
        return "<max depth>"
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in list(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in list(value)]
    converted = _fallback(value)
    if converted is value or isinstance(converted, str):
        return converted if isinstance(converted, str) else repr(converted)
    return to_jsonable(converted, _depth + 1)


def loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return text


def truncate(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 3)] + "..."
