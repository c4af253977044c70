"""Where traces go. ``backend_for_uri`` maps a tracking URI to a backend instance.

==============================  =============================================
URI                             backend
==============================  =============================================
(unset), a path, ``file:...``   local store: a directory with a SQLite file
``sqlite:///path/x.db``         local store in that SQLite file
``http(s)://host:port``         MLflow tracking server (``routetrace[mlflow]``)
``otlp+http(s)://host:port``    OpenTelemetry collector (``routetrace[otlp]``)
``file:///path/traces.jsonl``   OTLP-JSON lines for log shippers (``routetrace[file]``)
==============================  =============================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from routetrace.backends.base import Backend, BackendError, ExperimentInfo, UnsupportedOperation
from routetrace.backends.http import redact_uri
from routetrace.core.settings import DEFAULT_TRACKING_URI
from routetrace.export import lifecycle

if TYPE_CHECKING:
    from routetrace.core.settings import Settings

__all__ = [
    "DEFAULT_TRACKING_URI",
    "Backend",
    "BackendError",
    "ExperimentInfo",
    "UnsupportedOperation",
    "backend_for_uri",
    "clear_cache",
    "redact_uri",
]

log = logging.getLogger("routetrace")

_SCHEMES = "a directory path, file:, sqlite:///, http(s)://, otlp+http(s)://"

_cache: dict[tuple[str, int], Backend] = {}
_lock = threading.Lock()


def backend_for_uri(uri: str | None, settings: Settings | None = None) -> Backend:
    """The backend for ``uri`` (one instance per URI and process)."""
    import os

    if uri is None and settings is not None and settings.otlp_endpoint:
        # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT with no MLFLOW_TRACKING_URI: an OTLP collector,
        # as MLflow does; an explicit tracking URI wins.
        uri = "otlp+" + settings.otlp_endpoint
    key = (uri or DEFAULT_TRACKING_URI, os.getpid())
    backend = _cache.get(key)
    if backend is not None:
        return backend
    with _lock:
        backend = _cache.get(key)
        if backend is None:
            backend = _cache[key] = _create(uri or DEFAULT_TRACKING_URI, settings)
    return backend


def _create(uri: str, settings: Settings | None) -> Backend:
    if settings is None:
        from routetrace.core.settings import load_settings

        settings = load_settings()
    parts = urlsplit(uri) if "://" in uri or uri.startswith("file:") else None
    scheme = parts.scheme.lower() if parts else ""
    if scheme in ("", "file") and not (scheme == "file" and uri.endswith((".jsonl", ".ndjson"))):
        from routetrace.backends.local import LocalStore

        return LocalStore.from_uri(uri)
    if scheme == "sqlite":
        from routetrace.backends.local import LocalStore

        return LocalStore.from_uri(uri)
    if scheme == "file":
        from routetrace.backends.jsonl_file import JsonlFileBackend

        return JsonlFileBackend.from_uri(uri, settings)
    if scheme in ("http", "https"):
        from routetrace.backends.mlflow_server import MlflowServerBackend

        return MlflowServerBackend.from_uri(uri, settings)
    if scheme in ("otlp+http", "otlp+https", "otlp"):
        from routetrace.backends.otlp import OtlpBackend

        return OtlpBackend.from_uri(uri, settings)
    raise ValueError(
        f"tracking URI {redact_uri(uri)!r} has an unknown scheme {scheme!r}; "
        f"use {_SCHEMES}"
    )


def clear_cache() -> None:
    """Close and forget every backend made so far (the tracer is being replaced)."""
    with _lock:
        for backend in _cache.values():
            try:
                backend.close()
            except Exception:
                pass
        _cache.clear()


def _own_backends() -> list[Backend]:
    """This process's backends: a forked child's copies of its parent's are not its own."""
    import os

    pid = os.getpid()
    return [b for (_, owner), b in list(_cache.items()) if owner == pid]


def _each_backend(call: Callable[[Backend], None], failed: str) -> None:
    """``call(backend)`` for each of this process's backends; ``failed`` % uri is logged."""
    for backend in _own_backends():
        try:
            call(backend)
        except Exception:
            log.exception(failed, backend.uri)


def _before_fork() -> None:
    _each_backend(lambda b: b.before_fork(), "routetrace: preparing %s for fork failed")


def _after_fork_in_parent() -> None:
    _each_backend(lambda b: b.after_fork_in_parent(), "routetrace: resuming %s after fork failed")


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy locked for ever.
    global _lock
    _lock = threading.Lock()


lifecycle.on_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                  after_in_child=_after_fork_in_child)
