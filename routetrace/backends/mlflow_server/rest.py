"""The MLflow server's REST API as the backend speaks it: one pooled ``httpx.Client`` per
process, credentials on it, and every failure turned into a :class:`BackendError` whose
message says what to do (and never shows a credential)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from routetrace.backends.base import BackendError
from routetrace.backends.http import import_httpx, retry_after_seconds

if TYPE_CHECKING:
    import httpx

    from routetrace.core.settings import Settings

__all__ = ["OTLP_PATH", "V3", "RestClient"]

OTLP_PATH = "/v1/traces"
V3 = "/api/3.0/mlflow/traces"
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


class RestClient:
    """Requests to one MLflow server. ``uri`` is the display form (credentials redacted);
    ``on_fork`` is called when the first request of a forked child finds the parent's
    client, so the backend drops everything it inherited."""

    def __init__(self, base_url: str, uri: str, settings: Settings, *,
                 on_fork: Callable[[], None]) -> None:
        self._httpx = import_httpx("mlflow")
        self.base_url = base_url
        self.uri = uri
        self.settings = settings
        self.auth: Any = None
        self.headers: dict[str, str] = {"user-agent": "routetrace"}
        self._on_fork = on_fork
        self._client_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = os.getpid()

    def http(self) -> httpx.Client:
        """This process's client (a connection pool), created on first use."""
        if os.getpid() != self._pid:
            self._on_fork()
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    httpx = self._httpx
                    client = self._client = httpx.Client(
                        base_url=self.base_url,
                        auth=self.auth,
                        headers=self.headers,
                        verify=not self.settings.insecure_tls,
                        timeout=httpx.Timeout(30.0, connect=5.0),
                        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                    )
        return client

    def request(self, method: str, path: str, *, what: str, ok_404: bool = False,
                **kwargs: Any) -> httpx.Response | None:
        """One request; failures become ``BackendError`` with a message that says what to do.

        Messages name ``self.uri`` (credentials redacted) and never include request headers.
        """
        httpx = self._httpx
        try:
            response = self.http().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise BackendError(
                f"cannot reach the MLflow server at {self.uri} ({what}: "
                f"{type(exc).__name__}: {exc}); check that it is running and reachable. "
                "Traces are retried, then spooled for `routetrace push`.",
                retryable=True,
            ) from None
        status = response.status_code
        if status < 400:
            return response
        if status == 404 and ok_404:
            return None
        if status in (401, 403):
            raise BackendError(
                f"the MLflow server at {self.uri} refused {what} (HTTP {status}: "
                f"{_server_message(response)}); set MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, to credentials "
                "allowed to write traces.",
                retryable=False,
            )
        if status == 404 and path == OTLP_PATH:
            raise BackendError(
                f"the MLflow server at {self.uri} has no {OTLP_PATH} endpoint (HTTP 404): "
                "server too old (needs MLflow >= 3.6); upgrade it, then replay the spool "
                "with `routetrace push`.",
                retryable=False,
            )
        if status == 501:
            raise BackendError(
                f"the MLflow server at {self.uri} cannot store spans ({_server_message(response)});"
                " run it with a database backend store (--backend-store-uri sqlite:///... or "
                "postgresql://...).",
                retryable=False,
            )
        retryable = status in _RETRYABLE_STATUS
        raise BackendError(
            f"the MLflow server at {self.uri} answered {what} with HTTP {status}: "
            f"{_server_message(response)}",
            retryable=retryable,
            retry_after=retry_after_seconds(response) if retryable else None,
        )

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, what=what, **kwargs)
        assert response is not None
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise BackendError(
                f"the MLflow server at {self.uri} answered {what} with something that is not "
                f"JSON; is {self.uri} an MLflow tracking server?", retryable=False,
            ) from None

    def json_or_none(self, method: str, path: str, *, what: str,
                     **kwargs: Any) -> dict[str, Any] | None:
        """The JSON answer, or ``None`` when the server says 404 (no such thing)."""
        response = self.request(method, path, what=what, ok_404=True, **kwargs)
        if response is None:
            return None
        return response.json()

    def forget_client(self) -> None:
        """In a forked child: the parent's connections must not be shared with the child."""
        self._client = None
        self._client_lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
