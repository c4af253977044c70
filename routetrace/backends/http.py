"""What the HTTP backends (MLflow server, OTLP collector) share: httpx, imported only when one
is used, the server's ``Retry-After``, and URIs shown without their credentials."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

__all__ = ["import_httpx", "redact_uri", "retry_after_seconds"]


def import_httpx(extra: str) -> Any:
    try:
        import httpx
    except ImportError:
        raise ImportError(
            f"this tracking URI needs httpx: pip install 'routetrace[{extra}]'"
        ) from None
    return httpx


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date), capped at 5 minutes."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            value = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(value, 300.0))


def redact_uri(uri: str) -> str:
    """The URI with any ``user:password@`` removed, for messages and logs."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
