"""An OpenTelemetry collector (``otlp+http(s)://host:port``): standard OTLP/HTTP protobuf.

Each batch is one ``POST /v1/traces`` of an ``ExportTraceServiceRequest`` whose resource
carries ``service.name`` (``OTEL_SERVICE_NAME``, else ``routetrace``) and the experiment
(``mlflow.experiment.id`` / ``mlflow.experiment.name``), since a collector has no experiments
of its own. Headers come from ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` (and
``OTEL_EXPORTER_OTLP_HEADERS``). Write-only: a collector cannot be searched.

OTLP receivers treat spans as events, so a replayed batch may appear twice downstream unless
the tracing back-end deduplicates by (trace id, span id), as Jaeger and Tempo do.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from routetrace.backends import otlp_encoding as enc
from routetrace.backends.base import (
    Backend,
    BackendError,
    ExperimentInfo,
    LabelledExperiments,
    records_of,
)
from routetrace.backends.http import import_httpx, redact_uri, retry_after_seconds
from routetrace.backends.otlp_protobuf import encode_protobuf
from routetrace.core.build import TraceRecord
from routetrace.core.model import Trace

if TYPE_CHECKING:
    import httpx

    from routetrace.core.settings import Settings

__all__ = ["OtlpBackend", "endpoint_from_uri"]

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})  # OTLP/HTTP spec's list


def endpoint_from_uri(uri: str) -> str:
    """``otlp+http://host:4318`` → ``http://host:4318/v1/traces``; a path given is kept."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().removeprefix("otlp+")
    if scheme == "otlp":
        scheme = "http"
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"tracking URI {redact_uri(uri)!r}: write otlp+http://host:4318 or "
            "otlp+https://host:4318 (an OTLP/HTTP collector)"
        )
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class OtlpBackend(LabelledExperiments, Backend):
    """Writes traces to an OTLP/HTTP collector; experiments live only in resource attributes."""

    max_concurrency = 4

    def __init__(self, endpoint: str, settings: Settings, *, uri: str | None = None) -> None:
        self._httpx = import_httpx("otlp")
        self.endpoint = endpoint
        self.uri = redact_uri(uri or endpoint)
        self.settings = settings
        parts = urlsplit(endpoint)
        safe = f"{parts.hostname}_{parts.port or ''}"
        self.spool_dir = (Path(settings.spool_dir) if settings.spool_dir
                          else Path.cwd() / "mlruns" / "spool" / f"otlp-{safe}")
        self.service_name = settings.service_name or "routetrace"
        self._headers = {**settings.otlp_headers, "content-type": "application/x-protobuf"}
        self._experiments: dict[str, ExperimentInfo] = {}
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> OtlpBackend:
        return cls(endpoint_from_uri(uri), settings, uri=uri)

    def _http(self) -> httpx.Client:
        if os.getpid() != self._pid:
            self.after_fork()
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    httpx = self._httpx
                    self._client = httpx.Client(
                        headers=self._headers,
                        verify=not self.settings.insecure_tls,
                        timeout=httpx.Timeout(10.0, connect=5.0),
                    )
                client = self._client
        return client

    def resource(self, experiment: ExperimentInfo) -> dict[str, Any]:
        return {
            "service.name": self.service_name,
            "telemetry.sdk.name": "routetrace",
            enc.RESOURCE_EXPERIMENT_ID: experiment.experiment_id,
            enc.RESOURCE_EXPERIMENT_NAME: experiment.name,
        }

    def write_records(self, experiment: ExperimentInfo,
                      records: list[TraceRecord] | list[Trace]) -> None:
        """The worker's records are encoded as they are: no :class:`Trace` is built."""
        if not records:
            return
        self._post(encode_protobuf(records_of(records), resource=self.resource(experiment),
                                   style="json"))

    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        self.write_records(experiment, traces)

    def _post(self, body: bytes) -> None:
        httpx = self._httpx
        try:
            response = self._http().post(self.endpoint, content=body)
        except httpx.TransportError as exc:
            raise BackendError(
                f"cannot reach the OTLP collector at {self.uri} ({type(exc).__name__}: {exc}); "
                "check that it is running and listens for OTLP/HTTP (port 4318).",
                retryable=True,
            ) from None
        status = response.status_code
        if status < 300:
            return
        if status in (401, 403):
            raise BackendError(
                f"the OTLP collector at {self.uri} refused the traces (HTTP {status}); set "
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS (e.g. authorization=Bearer%20<token>).",
                retryable=False,
            )
        if status == 404:
            raise BackendError(
                f"the OTLP collector at {self.uri} has no {urlsplit(self.endpoint).path} "
                "(HTTP 404); point the URI at its OTLP/HTTP receiver (usually port 4318).",
                retryable=False,
            )
        retryable = status in _RETRYABLE_STATUS
        raise BackendError(
            f"the OTLP collector at {self.uri} answered HTTP {status}: {response.text[:200]}",
            retryable=retryable,
            retry_after=retry_after_seconds(response) if retryable else None,
        )

    def stats(self) -> dict[str, Any]:
        return {"backend": "otlp", "uri": self.uri, "service_name": self.service_name}

    def after_fork(self) -> None:
        self._client = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
