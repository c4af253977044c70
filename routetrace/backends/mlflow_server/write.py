"""Writing traces to an MLflow server, as MLflow's own SDK does for a trace, batched:

1. ``POST /v1/traces`` (OTLP protobuf, written straight from the export worker's records by
   :mod:`routetrace.backends.otlp_protobuf`) with every span of the batch, header
   ``x-mlflow-experiment-id`` (and ``x-mlflow-run-id`` for the traces of a run: one request
   per experiment and run). The server derives the trace's time, duration, state, name and
   ``mlflow.traceTag.*`` tags from the spans.
2. ``POST /api/3.0/mlflow/traces`` (``StartTraceV3``) per trace with the full trace info: the
   previews (custom ones included), metadata (run link, schema version), tags. The server
   derives previews from the root span's inputs/outputs in its own way and keeps no metadata
   from OTLP, so this call is what makes the UI show what the local store shows.

Both are upserts keyed by (trace id, span id) and trace id on the server (SQL stores), so a
replayed batch never duplicates a trace: retries and spool replays need no existence check.
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from routetrace.backends import mlflow_metadata
from routetrace.backends.base import ExperimentInfo, records_of
from routetrace.backends.mlflow_server.rest import OTLP_PATH, V3, RestClient
from routetrace.backends.otlp_protobuf import encode_protobuf
from routetrace.core.build import TraceRecord, to_trace
from routetrace.core.model import METADATA_CLIENT_REQUEST_ID, Trace

if TYPE_CHECKING:
    from routetrace.core.settings import Settings

__all__ = ["EXPERIMENT_HEADER", "RUN_HEADER", "TraceWriter"]

EXPERIMENT_HEADER = "x-mlflow-experiment-id"  # mlflow/tracing/utils/otlp.py
RUN_HEADER = "x-mlflow-run-id"
_MAX_METADATA_CHARS = 250  # mlflow/tracing/constant.py: MAX_CHARS_IN_TRACE_INFO_METADATA
_MAX_TAG_KEY_CHARS = 250
_MAX_TAG_VALUE_CHARS = 4096
_INFO_CALLS_IN_FLIGHT = 8  # StartTraceV3 calls of one batch sent at once


def _rfc3339_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class TraceWriter:
    """Turns a batch of traces into the server's two calls; what stays the same for every
    batch (the OTLP resource, the default metadata, the encoding) is worked out once."""

    def __init__(self, rest: RestClient, settings: Settings) -> None:
        self._rest = rest
        self._resource: dict[str, Any] = {}
        if settings.service_name:
            self._resource["service.name"] = settings.service_name
        self._default_metadata = {
            "mlflow.user": _user(),
            "mlflow.source.name": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0]
            else "python",
            "mlflow.source.type": "LOCAL",
        }

    def write_records(self, experiment: ExperimentInfo,
                      items: list[TraceRecord] | list[Trace]) -> None:
        """Write the worker's records (or traces read back from a spool): the spans are
        encoded from the records as they are; the trace infos are worked out from the read
        model, as MLflow's client computes them."""
        if not items:
            return
        records = records_of(items)
        by_run: dict[str | None, list[TraceRecord]] = {}
        for record in records:
            by_run.setdefault(record.run_id, []).append(record)
        for run_id, group in by_run.items():
            self._post_spans(experiment, run_id, group)
        traces = [item if item.__class__ is Trace
                  else to_trace(item, experiment.experiment_id, experiment.name)  # type: ignore[arg-type]
                  for item in items]
        if len(traces) == 1:
            self._post_info(experiment, traces[0])  # type: ignore[arg-type]
            return
        # MLflow has no batch call for trace infos: a batch's calls go out side by side
        # (a backlog after an outage is hundreds of them), and the first failure fails the
        # batch, which is retried whole (the calls are upserts).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(_INFO_CALLS_IN_FLIGHT, len(traces)),
                                thread_name_prefix="routetrace-mlflow-info") as pool:
            for done in [pool.submit(self._post_info, experiment, t) for t in traces]:
                done.result()

    def encode_spans(self, records: list[TraceRecord]) -> bytes:
        """The OTLP protobuf body for ``records``."""
        return encode_protobuf(records, resource=self._resource, style="native")

    def _post_spans(self, experiment: ExperimentInfo, run_id: str | None,
                    records: list[TraceRecord]) -> None:
        headers = {"content-type": "application/x-protobuf",
                   EXPERIMENT_HEADER: experiment.experiment_id}
        if run_id:
            headers[RUN_HEADER] = run_id
        self._rest.request("POST", OTLP_PATH, content=self.encode_spans(records),
                           headers=headers, what=f"{len(records)} traces on {OTLP_PATH}")

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
        self._rest.request("POST", V3, json=self.trace_info_body(experiment, trace),
                           what=f"the trace info of {trace.info.trace_id}")
