"""Scrub captured bodies and query strings by key name, on the export worker.

Which keys are secret is :class:`~routetrace.routing.scrub.KeyPolicy`'s call; this module
finds the keys in each form a body takes (parsed JSON at any depth, JSON text cut by the
capture cap, ``application/x-www-form-urlencoded``, ``multipart/form-data``) and replaces
their values with ``REDACTED``, the whole value whatever its type. Only copies are changed:
the bytes the application sent or received are never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from routetrace.routing.scrub import KeyPolicy

__all__ = ["REDACTED", "parse_json", "scrub_pairs", "scrub_text"]

REDACTED = "REDACTED"  # the placeholder OpenTelemetry's semantic conventions use

_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*')
_NAME = re.compile(r'(?<![\w-])name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_decoder = json.JSONDecoder()


def parse_json(data: bytes | str, policy: KeyPolicy) -> Any:
    """``json.loads(data)`` with the values of secret keys replaced, at every depth, as each
    object is decoded (one call per object from the C decoder, no second walk).

    Raises what ``json.loads`` raises: ``ValueError``, or ``RecursionError`` when nested
    deeper than the interpreter's recursion limit.
    """
    decoder = _decoders.get(policy)
    if decoder is None:
        if len(_decoders) >= 64:
            _decoders.clear()  # bounded: one entry per distinct key list in use
        decoder = _decoders[policy] = json.JSONDecoder(object_hook=_hook(policy))
    if not isinstance(data, str):
        data = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    return decoder.decode(data)


# One decoder per key policy: json.loads with a hook would build a decoder per body.
_decoders: dict[KeyPolicy, json.JSONDecoder] = {}


def _hook(policy: KeyPolicy) -> Callable[[dict[str, Any]], dict[str, Any]]:
    denies = policy.denies

    def hook(obj: dict[str, Any]) -> dict[str, Any]:
        for key in obj:
            if denies(key):
                obj[key] = REDACTED
        return obj

    return hook


def scrub_pairs(text: str, policy: KeyPolicy, exact: frozenset[str] = frozenset()) -> str:
    """A query string or form body with the values of secret keys replaced.

    A key is secret when ``policy`` denies it or, lower-cased, it is in ``exact``.
    """
    if not text:
        return text
    parts = text.split("&")
    for i, part in enumerate(parts):
        name, sep, _ = part.partition("=")
        if sep:
            key = unquote_plus(name).strip()
            if key.lower() in exact or policy.denies(key):
                parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def scrub_text(text: str, content_type: str, policy: KeyPolicy) -> str:
    """A body kept as text (cut by the cap, not parseable, or not JSON by its content type)
    scrubbed by its content type; text that looks like JSON is scrubbed as JSON whatever the
    content type says (``curl -d '{...}'`` sends it as a form)."""
    content_type = content_type.lower()
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        return _scrub_json_text(text, policy)
    if "x-www-form-urlencoded" in content_type:
        return scrub_pairs(text, policy)
    if "multipart/form-data" in content_type:
        return _scrub_multipart(text, content_type, policy)
    return text


def _scrub_json_text(text: str, policy: KeyPolicy) -> str:
    """JSON text that did not parse (cut by the cap): each ``"key":`` found is judged, and a
    secret one's value is replaced up to its end, or to the end of the text when the cut
    fell inside it."""
    out = []
    pos = 0
    while True:
        m = _JSON_KEY.search(text, pos)
        if m is None:
            break
        try:
            key = json.loads(f'"{m.group(1)}"')
        except ValueError:
            key = m.group(1)
        if not policy.denies(key):
            out.append(text[pos:m.end()])
            pos = m.end()
            continue
        out.append(text[pos:m.end()])
        out.append(f'"{REDACTED}"')
        try:
            _, pos = _decoder.raw_decode(text, m.end())
        except (ValueError, RecursionError):
            return "".join(out)
    out.append(text[pos:])
    return "".join(out)


def _scrub_multipart(text: str, content_type: str, policy: KeyPolicy) -> str:
    found = _BOUNDARY.search(content_type)
    if found is None:
        return text
    delimiter = "--" + (found.group(1) or found.group(2))
    parts = text.split(delimiter)
    for i in range(1, len(parts)):
        head, sep, body = parts[i].partition("\r\n\r\n")
        if not sep:
            head, sep, body = parts[i].partition("\n\n")
        found_name = _NAME.search(head) if sep else None
        if found_name is None:
            continue
        name = found_name.group(1) if found_name.group(1) is not None else found_name.group(2)
        if policy.denies(name):
            end = "\r\n" if body.endswith("\r\n") else "\n" if body.endswith("\n") else ""
            parts[i] = f"{head}{sep}{REDACTED}{end}"
    return delimiter.join(parts)
