"""The MLflow tracking server backend (``http(s)://host:port``), spoken over plain HTTP.

Writing a batch is what MLflow's own SDK does for a trace, batched:

1. ``POST /v1/traces`` (OTLP, protobuf when ``opentelemetry-proto`` is installed, OTLP-JSON
   otherwise) with every span of the batch, header ``x-mlflow-experiment-id`` (and
   ``x-mlflow-run-id`` for the traces of a run: one request per experiment and run). The
   server derives the trace's time, duration, state, name and ``mlflow.traceTag.*`` tags from
   the spans.
2. ``POST /api/3.0/mlflow/traces`` (``StartTraceV3``) per trace with the full trace info: the
   previews (custom ones included), metadata (run link, schema version), tags. The server
   derives previews from the root span's inputs/outputs in its own way and keeps no metadata
   from OTLP, so this call is what makes the UI show what the local store shows.

Both are upserts keyed by (trace id, span id) and trace id on the server (SQL stores), so a
replayed batch never duplicates a trace: retries and spool replays need no existence check.
"""

from __future__ import annotations

import base64
import getpass
import logging
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from routetrace.backends import mlflow_metadata, redact_uri
from routetrace.backends import otlp_encoding as enc
from routetrace.backends.base import (
    Backend,
    BackendError,
    ExperimentInfo,
    check_delete_arguments,
    check_max_results,
)
from routetrace.backends.http import import_httpx, retry_after_seconds
from routetrace.core.destination import Experiment
from routetrace.core.model import (
    METADATA_CLIENT_REQUEST_ID,
    Span,
    SpanEvent,
    SpanStatus,
    Trace,
    TraceData,
    TraceInfo,
    parse_trace_id,
)

if TYPE_CHECKING:
    import httpx

    from routetrace.core.settings import Settings

__all__ = ["MlflowServerBackend"]

log = logging.getLogger("routetrace")

EXPERIMENT_HEADER = "x-mlflow-experiment-id"  # mlflow/tracing/utils/otlp.py
RUN_HEADER = "x-mlflow-run-id"
OTLP_PATH = "/v1/traces"
_V3 = "/api/3.0/mlflow/traces"
_MAX_METADATA_CHARS = 250  # mlflow/tracing/constant.py: MAX_CHARS_IN_TRACE_INFO_METADATA
_MAX_TAG_KEY_CHARS = 250
_MAX_TAG_VALUE_CHARS = 4096
_SEARCH_PAGE = 500  # the server's cap on max_results
_BATCH_GET = 100
_INFO_CALLS_IN_FLIGHT = 8  # StartTraceV3 calls of one batch sent at once
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Span attributes the encoding adds; reading back, they become fields, not attributes.
# ``mlflow.spanFunctionName`` stays: @trace records it, so local traces have it too.
_READ_BACK_DROP = (enc.TRACE_REQUEST_ID, enc.SPAN_TYPE, enc.SPAN_INPUTS, enc.SPAN_OUTPUTS,
                  "mlflow.spanLogLevel")


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error_code", "")) if isinstance(body, dict) else ""


def _rfc3339_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_rfc3339_ms(text: str | None) -> int:
    if not text:
        return 0
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000)


def _parse_duration_ms(text: str | None) -> int | None:
    if not text:
        return None
    return round(float(str(text).rstrip("s")) * 1000)


def _hex_id(value: str | None, width: int) -> str | None:
    if not value:
        return None
    return base64.b64decode(value).hex().rjust(width, "0")


class MlflowServerBackend(Backend):
    """Traces to an MLflow tracking server (>= 3.6) over HTTP; search and delete through its
    REST API. Thread-safe: one ``httpx.Client`` (a connection pool) per process."""

    max_concurrency = 4

    def __init__(self, base_url: str, settings: Settings, *, uri: str | None = None) -> None:
        self._httpx = import_httpx("mlflow")
        self.base_url = base_url.rstrip("/")
        self.uri = redact_uri(uri or base_url)
        self.settings = settings
        from pathlib import Path

        if settings.spool_dir:
            self.spool_dir = Path(settings.spool_dir)
        else:
            parts = urlsplit(self.base_url)
            safe = f"{parts.hostname}_{parts.port or ''}".replace(":", "_")
            self.spool_dir = Path.cwd() / "mlruns" / "spool" / f"mlflow-{safe}"
        self._auth: Any = None
        self._headers: dict[str, str] = {"user-agent": "routetrace"}
        self._use_protobuf = enc.protobuf_available()
        self._experiments: dict[str, ExperimentInfo] = {}
        self._names_by_id: dict[str, str] = {}
        self._resolve_lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = os.getpid()
        self._resource: dict[str, Any] = {}
        if settings.service_name:
            self._resource["service.name"] = settings.service_name
        self._default_metadata = {
            "mlflow.user": _user(),
            "mlflow.source.name": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0]
            else "python",
            "mlflow.source.type": "LOCAL",
        }

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> MlflowServerBackend:
        """``http(s)://[user:password@]host[:port][/prefix]``; credentials from the URI or
        MLFLOW_TRACKING_USERNAME/PASSWORD (basic) or MLFLOW_TRACKING_TOKEN (bearer)."""
        parts = urlsplit(uri)
        if not parts.hostname:
            raise ValueError(f"tracking URI {redact_uri(uri)!r} has no host; "
                             "write http://host:port")
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port:
            netloc += f":{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        backend = cls(base, settings, uri=uri)
        username = parts.username or settings.tracking_username
        password = parts.password or settings.tracking_password
        if username and password:
            from urllib.parse import unquote

            backend._auth = (unquote(username), unquote(password))
        elif settings.tracking_token:
            backend._headers["authorization"] = f"Bearer {settings.tracking_token}"
        return backend

    # -- HTTP -----------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        if os.getpid() != self._pid:
            self.after_fork()
        client = self._client
        if client is None:
            with self._client_lock:
                client = self._client
                if client is None:
                    httpx = self._httpx
                    client = self._client = httpx.Client(
                        base_url=self.base_url,
                        auth=self._auth,
                        headers=self._headers,
                        verify=not self.settings.insecure_tls,
                        timeout=httpx.Timeout(30.0, connect=5.0),
                        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                    )
        return client

    def _request(self, method: str, path: str, *, what: str, ok_404: bool = False,
                 **kwargs: Any) -> httpx.Response | None:
        """One request; failures become ``BackendError`` with a message that says what to do.

        Messages name ``self.uri`` (credentials redacted) and never include request headers.
        """
        httpx = self._httpx
        try:
            response = self._http().request(method, path, **kwargs)
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

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, what=what, **kwargs)
        assert response is not None
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise BackendError(
                f"the MLflow server at {self.uri} answered {what} with something that is not "
                f"JSON; is {self.uri} an MLflow tracking server?", retryable=False,
            ) from None

    # -- experiments and runs -------------------------------------------------------------
    def resolve_experiment(self, experiment: Experiment, *, create: bool = True) -> ExperimentInfo:
        cached = self._experiments.get(experiment.key)
        if cached is not None:
            return cached
        with self._resolve_lock:  # one lookup (and one create) per experiment, not per batch
            cached = self._experiments.get(experiment.key)
            if cached is not None:
                return cached
            info = self._lookup(experiment, create)
            self._experiments[experiment.key] = info
            self._names_by_id[info.experiment_id] = info.name
            return info

    def _lookup(self, experiment: Experiment, create: bool) -> ExperimentInfo:
        if experiment.experiment_id is not None:
            body = self._json_or_none(
                "GET", "/api/2.0/mlflow/experiments/get",
                params={"experiment_id": str(experiment.experiment_id)},
                what=f"the lookup of experiment id {experiment.experiment_id}",
            )
            if body is None:
                raise BackendError(f"experiment id {experiment.experiment_id!r} does not exist "
                                   f"on {self.uri}", retryable=False)
            return self._experiment_info(body["experiment"])
        name = experiment.name or "Default"
        body = self._get_by_name(name)
        if body is None:
            if not create:
                raise BackendError(f"no experiment named {name!r} on {self.uri}",
                                   retryable=False)
            try:
                self._json("POST", "/api/2.0/mlflow/experiments/create", json={"name": name},
                           what=f"creating experiment {name!r}")
            except BackendError as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    raise
            body = self._get_by_name(name)
            if body is None:
                raise BackendError(f"experiment {name!r} vanished on {self.uri} right after it "
                                   "was created", retryable=True)
        info = self._experiment_info(body["experiment"])
        if info.lifecycle_stage == "deleted":
            raise BackendError(
                f"experiment {name!r} is deleted on {self.uri}; restore it "
                "(mlflow experiments restore) or route the traces to another experiment",
                retryable=False,
            )
        return info

    def _get_by_name(self, name: str) -> dict[str, Any] | None:
        return self._json_or_none("GET", "/api/2.0/mlflow/experiments/get-by-name",
                                  params={"experiment_name": name},
                                  what=f"the lookup of experiment {name!r}")

    def _json_or_none(self, method: str, path: str, *, what: str,
                      **kwargs: Any) -> dict[str, Any] | None:
        response = self._request(method, path, what=what, ok_404=True, **kwargs)
        if response is None:
            return None
        return response.json()

    @staticmethod
    def _experiment_info(d: dict[str, Any]) -> ExperimentInfo:
        created = d.get("creation_time")
        return ExperimentInfo(str(d["experiment_id"]), d["name"],
                              None if created is None else int(created),
                              d.get("lifecycle_stage", "active"))

    def list_experiments(self) -> list[ExperimentInfo]:
        out: list[ExperimentInfo] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"max_results": 1000}
            if token:
                body["page_token"] = token
            resp = self._json("POST", "/api/2.0/mlflow/experiments/search", json=body,
                              what="listing experiments")
            out.extend(self._experiment_info(e) for e in resp.get("experiments", ()))
            token = resp.get("next_page_token")
            if not token:
                break
        for info in out:
            self._names_by_id[info.experiment_id] = info.name
        return sorted(out, key=lambda e: int(e.experiment_id) if e.experiment_id.isdigit()
                      else 0)

    def create_run(self, experiment: ExperimentInfo, run_name: str | None) -> str:
        body: dict[str, Any] = {"experiment_id": experiment.experiment_id,
                                "start_time": int(time.time() * 1000)}
        if run_name:
            body["run_name"] = run_name
        resp = self._json("POST", "/api/2.0/mlflow/runs/create", json=body,
                          what="creating a run")
        return str(resp["run"]["info"]["run_id"])

    def end_run(self, run_id: str, status: str) -> None:
        self._json("POST", "/api/2.0/mlflow/runs/update",
                   json={"run_id": run_id, "status": status,
                         "end_time": int(time.time() * 1000)},
                   what=f"ending run {run_id}")

    # -- writing --------------------------------------------------------------------------
    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        if not traces:
            return
        by_run: dict[str | None, list[Trace]] = {}
        for trace in traces:
            by_run.setdefault(trace.info.trace_metadata.get("mlflow.sourceRun"), []).append(trace)
        for run_id, group in by_run.items():
            self._post_spans(experiment, run_id, group)
        if len(traces) == 1:
            self._post_info(experiment, traces[0])
            return
        # MLflow has no batch call for trace infos: a batch's calls go out side by side
        # (a backlog after an outage is hundreds of them), and the first failure fails the
        # batch, which is retried whole (the calls are upserts).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(_INFO_CALLS_IN_FLIGHT, len(traces)),
                                thread_name_prefix="routetrace-mlflow-info") as pool:
            for done in [pool.submit(self._post_info, experiment, t) for t in traces]:
                done.result()

    def encode_spans(self, traces: list[Trace]) -> tuple[bytes, str]:
        """The OTLP body for ``traces`` and its content type."""
        if self._use_protobuf:
            body = enc.encode_protobuf(traces, resource=self._resource, style="native")
            return body, "application/x-protobuf"
        import json

        doc = enc.encode_json(traces, resource=self._resource, style="native")
        return json.dumps(doc, ensure_ascii=False, default=str).encode(), "application/json"

    def _post_spans(self, experiment: ExperimentInfo, run_id: str | None,
                    traces: list[Trace]) -> None:
        body, content_type = self.encode_spans(traces)
        headers = {"content-type": content_type, EXPERIMENT_HEADER: experiment.experiment_id}
        if run_id:
            headers[RUN_HEADER] = run_id
        self._request("POST", OTLP_PATH, content=body, headers=headers,
                      what=f"{len(traces)} traces on {OTLP_PATH}")

    def trace_info_body(self, experiment: ExperimentInfo, trace: Trace) -> dict[str, Any]:
        """``StartTraceV3``'s JSON body: the trace info as MLflow's client sends it."""
        info = trace.info
        metadata = {**self._default_metadata, **mlflow_metadata.io_metadata(trace),
                    **info.trace_metadata}
        client_request_id = metadata.pop(METADATA_CLIENT_REQUEST_ID, None)
        body: dict[str, Any] = {
            "trace_id": info.trace_id,
            "trace_location": {"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": experiment.experiment_id}},
            "request_time": _rfc3339_ms(info.request_time),
            "state": str(info.state),
            "trace_metadata": {
                k[:_MAX_METADATA_CHARS]: str(v)[:_MAX_METADATA_CHARS]
                for k, v in metadata.items()
            },
            "tags": {
                k[:_MAX_TAG_KEY_CHARS]: str(v)[:_MAX_TAG_VALUE_CHARS]
                for k, v in info.tags.items()
            },
        }
        if info.execution_duration is not None:
            body["execution_duration"] = f"{info.execution_duration / 1000:.3f}s"
        if info.request_preview is not None:
            body["request_preview"] = info.request_preview
        if info.response_preview is not None:
            body["response_preview"] = info.response_preview
        if client_request_id is not None:
            body["client_request_id"] = client_request_id
        # Measured on the info as sent, before the sizes are added: MLflow's own order.
        body["trace_metadata"].update(mlflow_metadata.size_metadata(trace, body))
        return {"trace": {"trace_info": body}}

    def _post_info(self, experiment: ExperimentInfo, trace: Trace) -> None:
        self._request("POST", _V3, json=self.trace_info_body(experiment, trace),
                      what=f"the trace info of {trace.info.trace_id}")

    # -- reading --------------------------------------------------------------------------
    def _experiment_name(self, experiment_id: str) -> str | None:
        name = self._names_by_id.get(experiment_id)
        if name is None and experiment_id:
            body = self._json_or_none("GET", "/api/2.0/mlflow/experiments/get",
                                      params={"experiment_id": experiment_id},
                                      what=f"the lookup of experiment id {experiment_id}")
            if body is not None:
                name = self._names_by_id[experiment_id] = body["experiment"]["name"]
        return name

    def _info_from_json(self, d: dict[str, Any]) -> TraceInfo:
        location = d.get("trace_location") or {}
        exp_id = str((location.get("mlflow_experiment") or {}).get("experiment_id", ""))
        metadata = dict(d.get("trace_metadata") or {})
        if d.get("client_request_id"):
            metadata[METADATA_CLIENT_REQUEST_ID] = d["client_request_id"]
        return TraceInfo(
            trace_id=d["trace_id"],
            experiment_id=exp_id,
            experiment_name=self._experiment_name(exp_id),
            request_time=_parse_rfc3339_ms(d.get("request_time")),
            execution_duration=_parse_duration_ms(d.get("execution_duration")),
            state=d.get("state", "STATE_UNSPECIFIED"),
            request_preview=d.get("request_preview"),
            response_preview=d.get("response_preview"),
            tags=dict(d.get("tags") or {}),
            trace_metadata=metadata,
        )

    @staticmethod
    def _span_from_json(trace_id: str, d: dict[str, Any]) -> Span:
        attrs = {a["key"]: enc.decode_any_value_json(a.get("value") or {})
                 for a in d.get("attributes", ())}
        span_type = attrs.get(enc.SPAN_TYPE) or "UNKNOWN"
        inputs = attrs.get(enc.SPAN_INPUTS)
        outputs = attrs.get(enc.SPAN_OUTPUTS)
        for key in _READ_BACK_DROP:
            attrs.pop(key, None)
        for key in [k for k in attrs if k.startswith(enc.TRACE_TAG_PREFIX)]:
            attrs.pop(key)
        status = d.get("status") or {}
        end = d.get("end_time_unix_nano")
        return Span(
            trace_id=trace_id,
            span_id=_hex_id(d.get("span_id"), 16) or "",
            parent_id=_hex_id(d.get("parent_span_id"), 16),
            name=d.get("name", ""),
            span_type=str(span_type),
            start_time_ns=int(d.get("start_time_unix_nano", 0)),
            end_time_ns=None if end is None else int(end),
            status=SpanStatus(enc.status_name(status.get("code")), status.get("message", "")),
            inputs=inputs,
            outputs=outputs,
            attributes=attrs,
            events=[
                SpanEvent(
                    e.get("name", ""), int(e.get("time_unix_nano", 0)),
                    {a["key"]: enc.decode_any_value_json(a.get("value") or {})
                     for a in e.get("attributes", ())},
                )
                for e in d.get("events", ())
            ],
        )

    def _trace_from_json(self, d: dict[str, Any]) -> Trace:
        info = self._info_from_json(d["trace_info"])
        spans = [self._span_from_json(info.trace_id, s) for s in d.get("spans", ())]
        spans.sort(key=lambda s: (s.start_time_ns, s.parent_id is not None))
        return Trace(info, TraceData(spans))

    def get_trace(self, trace_id: str) -> Trace | None:
        tid = parse_trace_id(trace_id)
        body = self._json_or_none("GET", f"{_V3}/get", params={"trace_id": tid},
                                  what=f"reading trace {tid}")
        if body is None or "trace" not in body:
            return None
        return self._trace_from_json(body["trace"])

    def search_traces(
        self,
        *,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        run_id: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        include_spans: bool = True,
        offset: int = 0,
    ) -> list[Trace]:
        check_max_results(max_results)
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in self.list_experiments()
                              if e.lifecycle_stage == "active"]
        if not experiment_ids:
            return []
        # MLflow's filter grammar has AND only and no parentheses: clauses are joined as-is.
        clauses = [filter_string.strip()] if filter_string and filter_string.strip() else []
        if run_id:
            clauses.append(f"metadata.`mlflow.sourceRun` = '{_quote(run_id)}'")
        wanted = max_results + max(0, int(offset))
        infos: list[dict[str, Any]] = []
        token: str | None = None
        while len(infos) < wanted:
            body: dict[str, Any] = {
                "locations": [{"type": "MLFLOW_EXPERIMENT",
                               "mlflow_experiment": {"experiment_id": str(e)}}
                              for e in experiment_ids],
                "max_results": min(_SEARCH_PAGE, wanted - len(infos)),
                "order_by": list(order_by or ["timestamp_ms DESC"]),
            }
            if clauses:
                body["filter"] = " AND ".join(clauses)
            if token:
                body["page_token"] = token
            resp = self._search_page(body)
            infos.extend(resp.get("traces", ()))
            token = resp.get("next_page_token")
            if not token:
                break
        infos = infos[max(0, int(offset)):][:max_results]
        if not include_spans:
            return [Trace(self._info_from_json(i), TraceData([])) for i in infos]
        full = self._batch_get([i["trace_id"] for i in infos])
        out = []
        for i in infos:
            trace = full.get(i["trace_id"])
            out.append(trace if trace is not None
                       else Trace(self._info_from_json(i), TraceData([])))
        return out

    def _search_page(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._json("POST", f"{_V3}/search", json=body, what="searching traces")
        except BackendError as exc:
            if not exc.retryable and "HTTP 400" in str(exc):
                raise ValueError(f"{self.uri} rejected the search: {exc}") from None
            raise

    def _batch_get(self, trace_ids: list[str]) -> dict[str, Trace]:
        out: dict[str, Trace] = {}
        for start in range(0, len(trace_ids), _BATCH_GET):
            chunk = trace_ids[start:start + _BATCH_GET]
            resp = self._json("GET", f"{_V3}/batchGet", params=[("trace_ids", t) for t in chunk],
                              what="reading traces")
            for t in resp.get("traces", ()):
                trace = self._trace_from_json(t)
                out[trace.info.trace_id] = trace
        return out

    def trace_exists(self, trace_ids: list[str]) -> set[str]:
        """Which of ``trace_ids`` the server has (push uses it when its ledger is unsure)."""
        found: set[str] = set()
        for start in range(0, len(trace_ids), _BATCH_GET):
            chunk = trace_ids[start:start + _BATCH_GET]
            resp = self._json("POST", f"{_V3}/batchGetInfos", json={"trace_ids": chunk},
                              what="checking traces")
            found.update(str(i["trace_id"]) for i in resp.get("trace_infos", ()))
        return found

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        tid = parse_trace_id(trace_id)
        self._request("PATCH", f"/api/2.0/mlflow/traces/{tid}/tags",
                      json={"key": str(key), "value": str(value)}, what=f"tagging trace {tid}")

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        tid = parse_trace_id(trace_id)
        self._request("DELETE", f"/api/2.0/mlflow/traces/{tid}/tags", json={"key": str(key)},
                      what=f"deleting tag {key!r} of trace {tid}")

    def delete_traces(
        self,
        *,
        experiment_id: str,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> int:
        check_delete_arguments(max_timestamp_millis, max_traces, trace_ids)
        body: dict[str, Any] = {"experiment_id": str(experiment_id)}
        if trace_ids is not None:
            if not trace_ids:
                return 0
            body["request_ids"] = [parse_trace_id(t) for t in trace_ids]
        else:
            # The server needs a timestamp bound; "everything up to now" when only a count is
            # given, as the local store does.
            body["max_timestamp_millis"] = int(
                max_timestamp_millis if max_timestamp_millis is not None
                else time.time() * 1000 + 60_000
            )
            if max_traces is not None:
                body["max_traces"] = max_traces
        resp = self._json("POST", f"{_V3}/delete-traces", json=body, what="deleting traces")
        return int(resp.get("traces_deleted", 0))

    def stats(self) -> dict[str, Any]:
        return {"backend": "mlflow", "uri": self.uri,
                "encoding": "protobuf" if self._use_protobuf else "json",
                "experiments_cached": len(self._experiments)}

    def after_fork(self) -> None:
        # The parent's connections must not be shared with the child.
        self._client = None
        self._client_lock = threading.Lock()
        self._resolve_lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
