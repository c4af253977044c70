"""Which keys hold secrets, and how a captured body, query string or header set loses them.

A key is secret when its words hold a denied name. The words of a key are its runs of
letters and digits, split also where a lower-case letter meets an upper-case one, and
lower-cased: ``X-Auth-Token``, ``auth_token``, ``authToken`` and ``AUTH.TOKEN`` are all
``auth token``. A key is secret when

- a one-word denied name ends one of its words (``token`` hits ``auth_token`` and
  ``accesstoken``, not ``max_tokens`` or ``tokenizer``; ``auth`` hits ``oauth``, not
  ``author``), or
- the words of a longer denied name stand in it in a row (``api_key`` hits ``X-Api-Key``
  and ``apiKey``, not ``key_api``);

unless its last word only describes a secret (``prompt_token_count``, ``token_type``,
``session_length``: see :data:`DESCRIPTORS`), or the key is listed in ``safe_keys``.

Sentry's SDK matches its list exactly (``auth_token`` is kept); its server matches any
substring (``author`` and ``max_tokens`` are scrubbed). Words sit between the two: the
names people give secrets are caught, an LLM service's token counts are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["ALWAYS_SECRET", "DEFAULT_DENIED_KEYS", "DEFAULT_POLICY", "DESCRIPTORS", "KeyPolicy",
           "normalise", "words"]

# sentry_sdk.scrubber.DEFAULT_DENYLIST and DEFAULT_PII_DENYLIST (scrubbed while
# send_default_pii is off, its default), and a few more names secrets go by.
DEFAULT_DENIED_KEYS = (
    "password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd",
    "privatekey", "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken",
    "x_forwarded_for", "set_cookie", "cookie", "authorization", "proxy-authorization",
    "x_api_key", "aiohttp_session", "connect.sid", "csrf_token", "csrf", "_csrf",
    "_csrf_token", "PHPSESSID", "_session", "symfony", "user_session", "_xsrf", "XSRF-TOKEN",
    # Sentry's PII list
    "x_real_ip", "ip_address", "remote_addr",
    # not in Sentry's lists
    "access_key", "passphrase",
)
# Names that ``safe_keys`` cannot exempt: credentials by any reading.
ALWAYS_SECRET = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key",
    "apikey", "password", "passwd", "secret", "token", "private_key", "privatekey",
})
# A key whose last word is one of these is about a secret, not one (``token_count``).
DESCRIPTORS = frozenset({"count", "type", "length", "size", "limit", "usage", "ttl",
                         "expiry", "expires", "expiration"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+|[^\W_A-Za-z0-9]+")
CACHE_SIZE = 4096  # distinct keys remembered before the cache starts over


def words(key: str) -> list[str]:
    """The lower-cased words of a key: ``"X-AuthToken"`` -> ``["x", "auth", "token"]``."""
    return [w.lower() for w in _WORD.findall(key)]


def normalise(key: str) -> str:
    """A key as ``safe_keys`` and the denied names compare it: its words joined by ``_``."""
    return "_".join(words(key))


class _Decisions(dict):
    """Key -> denied, decided on first sight: a key seen before costs one dict lookup."""

    __slots__ = ("decide",)

    def __init__(self, decide: Callable[[str], bool]) -> None:
        super().__init__()
        self.decide = decide

    def __missing__(self, key: str) -> bool:
        if len(self) >= CACHE_SIZE:
            self.clear()  # bounded whatever the keys' cardinality
        found = self[key] = self.decide(key)
        return found


class KeyPolicy:
    """The compiled deny rule. ``policy.denies(key)`` is True when the value under ``key``
    must not be stored (a bound ``dict.__getitem__``: the worker asks for every key)."""

    __slots__ = ("_multi", "_single", "denied", "denies", "safe")

    def __init__(self, denied: Iterable[str] = DEFAULT_DENIED_KEYS,
                 safe: Iterable[str] = ()) -> None:
        self.denied = frozenset(filter(None, map(normalise, denied)))
        self.safe = frozenset(filter(None, map(normalise, safe)))
        if self.safe & ALWAYS_SECRET:
            raise ValueError(f"{', '.join(sorted(self.safe & ALWAYS_SECRET))}: credentials are "
                             "always redacted and cannot be made safe keys")
        self._single = tuple(sorted(n for n in self.denied if "_" not in n))
        self._multi = tuple(sorted(f"_{n}_" for n in self.denied if "_" in n))
        self.denies: Callable[[str], bool] = _Decisions(self._decide).__getitem__

    def extended(self, denied: Iterable[str] = (), safe: Iterable[str] = ()) -> KeyPolicy:
        """This policy with more denied names and more safe keys."""
        return KeyPolicy((*self.denied, *denied), (*self.safe, *safe))

    def __eq__(self, other: object) -> bool:
        # Equal lists are one policy: caches keyed by it stay as small as the distinct tables.
        if not isinstance(other, KeyPolicy):
            return NotImplemented
        return self.denied == other.denied and self.safe == other.safe

    def __hash__(self) -> int:
        return hash((self.denied, self.safe))

    def _decide(self, key: str) -> bool:
        parts = words(key)
        joined = "_".join(parts)
        if not parts or joined in self.safe:
            return False
        if joined in self.denied:
            return True
        if len(parts) > 1 and parts[-1] in DESCRIPTORS:
            return False
        single = self._single
        if any(w.endswith(single) for w in parts):
            return True
        joined = f"_{joined}_"
        return any(name in joined for name in self._multi)

    def __repr__(self) -> str:
        return f"KeyPolicy(denied={len(self.denied)}, safe={sorted(self.safe)})"


DEFAULT_POLICY = KeyPolicy()
