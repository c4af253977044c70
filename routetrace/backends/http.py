"""What the HTTP backends (MLflow server, OTLP collector) share: httpx, imported only when one
is used, and the server's ``Retry-After``."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["import_httpx", "retry_after_seconds"]


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
