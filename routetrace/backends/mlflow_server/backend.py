"""The :class:`MlflowServerBackend`: experiments cached per process, writing through
:class:`~.write.TraceWriter`, reading through :class:`~.read.TraceReader`, both over one
:class:`~.rest.RestClient`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from routetrace.backends.base import (
    Backend,
    ExperimentInfo,
    TraceQuery,
    TraceSelection,
)
from routetrace.backends.http import redact_uri
from routetrace.backends.mlflow_server import experiments
from routetrace.backends.mlflow_server.read import TraceReader
from routetrace.backends.mlflow_server.rest import V3, RestClient
from routetrace.backends.mlflow_server.write import TraceWriter
from routetrace.core.build import TraceRecord
from routetrace.core.destination import Experiment
from routetrace.core.model import Trace, parse_trace_id

if TYPE_CHECKING:
    import httpx

    from routetrace.core.settings import Settings

__all__ = ["MlflowServerBackend"]


class MlflowServerBackend(Backend):
    """Traces to an MLflow tracking server (>= 3.6) over HTTP; search and delete through its
    REST API. Thread-safe: one ``httpx.Client`` (a connection pool) per process."""

    max_concurrency = 4

    def __init__(self, base_url: str, settings: Settings, *, uri: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.uri = redact_uri(uri or base_url)
        self.settings = settings
        self._rest = RestClient(self.base_url, self.uri, settings, on_fork=self.after_fork)
        if settings.spool_dir:
            self.spool_dir = Path(settings.spool_dir)
        else:
            parts = urlsplit(self.base_url)
            safe = f"{parts.hostname}_{parts.port or ''}".replace(":", "_")
            self.spool_dir = Path.cwd() / "mlruns" / "spool" / f"mlflow-{safe}"
        self._writer = TraceWriter(self._rest, settings)
        self._reader = TraceReader(self._rest, self._experiment_name)
        self._experiments: dict[str, ExperimentInfo] = {}
        self._names_by_id: dict[str, str] = {}
        self._resolve_lock = threading.Lock()

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
            backend._rest.auth = (unquote(username), unquote(password))
        elif settings.tracking_token:
            backend._rest.headers["authorization"] = f"Bearer {settings.tracking_token}"
        return backend

    def _http(self) -> httpx.Client:
        """This process's pooled client."""
        return self._rest.http()

    # -- experiments and runs -------------------------------------------------------------
    def resolve_experiment(self, experiment: Experiment, *, create: bool = True) -> ExperimentInfo:
        cached = self._experiments.get(experiment.key)
        if cached is not None:
            return cached
        with self._resolve_lock:  # one lookup (and one create) per experiment, not per batch
            cached = self._experiments.get(experiment.key)
            if cached is not None:
                return cached
            info = experiments.look_up(self._rest, experiment, create)
            self._experiments[experiment.key] = info
            self._names_by_id[info.experiment_id] = info.name
            return info

    def list_experiments(self) -> list[ExperimentInfo]:
        out = experiments.list_experiments(self._rest)
        for info in out:
            self._names_by_id[info.experiment_id] = info.name
        return out

    def _experiment_name(self, experiment_id: str) -> str | None:
        name = self._names_by_id.get(experiment_id)
        if name is None and experiment_id:
            body = self._rest.json_or_none("GET", "/api/2.0/mlflow/experiments/get",
                                           params={"experiment_id": experiment_id},
                                           what=f"the lookup of experiment id {experiment_id}")
            if body is not None:
                name = self._names_by_id[experiment_id] = body["experiment"]["name"]
        return name

    def create_run(self, experiment: ExperimentInfo, run_name: str | None) -> str:
        return experiments.create_run(self._rest, experiment, run_name)

    def end_run(self, run_id: str, status: str) -> None:
        experiments.end_run(self._rest, run_id, status)

    # -- writing and reading --------------------------------------------------------------
    def write_records(self, experiment: ExperimentInfo,
                      records: list[TraceRecord] | list[Trace]) -> None:
        self._writer.write_records(experiment, records)

    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        self._writer.write_records(experiment, traces)

    def get_trace(self, trace_id: str) -> Trace | None:
        return self._reader.get_trace(parse_trace_id(trace_id))

    def _search_traces(self, query: TraceQuery) -> list[Trace]:
        experiment_ids = query.experiment_ids
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in self.list_experiments()
                              if e.lifecycle_stage == "active"]
        if not experiment_ids:
            return []
        return self._reader.search(query, experiment_ids)

    def trace_exists(self, trace_ids: list[str]) -> set[str]:
        """Which of ``trace_ids`` the server has (push uses it when its ledger is unsure)."""
        return self._reader.trace_exists(trace_ids)

    # -- tags and deleting ----------------------------------------------------------------
    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        tid = parse_trace_id(trace_id)
        self._rest.request("PATCH", f"/api/2.0/mlflow/traces/{tid}/tags",
                           json={"key": str(key), "value": str(value)},
                           what=f"tagging trace {tid}")

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        tid = parse_trace_id(trace_id)
        self._rest.request("DELETE", f"/api/2.0/mlflow/traces/{tid}/tags",
                           json={"key": str(key)},
                           what=f"deleting tag {key!r} of trace {tid}")

    def _delete_traces(self, selection: TraceSelection) -> int:
        body: dict[str, Any] = {"experiment_id": str(selection.experiment_id)}
        if selection.trace_ids is not None:
            if not selection.trace_ids:
                return 0
            body["request_ids"] = [parse_trace_id(t) for t in selection.trace_ids]
        else:
            # The server needs a timestamp bound; "everything up to now" when only a count is
            # given, as the local store does.
            body["max_timestamp_millis"] = int(
                selection.max_timestamp_millis if selection.max_timestamp_millis is not None
                else time.time() * 1000 + 60_000
            )
            if selection.max_traces is not None:
                body["max_traces"] = selection.max_traces
        resp = self._rest.json("POST", f"{V3}/delete-traces", json=body,
                               what="deleting traces")
        return int(resp.get("traces_deleted", 0))

    def stats(self) -> dict[str, Any]:
        return {"backend": "mlflow", "uri": self.uri,
                "encoding": "protobuf",
                "experiments_cached": len(self._experiments)}

    def after_fork(self) -> None:
        self._rest.forget_client()
        self._resolve_lock = threading.Lock()

    def close(self) -> None:
        self._rest.close()
