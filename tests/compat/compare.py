"""Helpers of the compatibility suite: running a snippet, and a trace as comparable data."""

from __future__ import annotations

import json
from typing import Any

VOLATILE_TAGS = frozenset({"mlflow.artifactLocation"})
# Span attributes both SDKs keep as fields of the span (span_type, inputs, outputs) or that
# name ids; routetrace reads them back as fields, MLflow leaves them in ``attributes`` too.
FIELD_ATTRIBUTES = frozenset({"mlflow.traceRequestId", "mlflow.spanType", "mlflow.spanInputs",
                              "mlflow.spanOutputs"})
# ``mlflow.source.git.*``: MLflow's SDK runs git where the process started; routetrace does
# not (docs/mlflow-compat.md). Metadata whose values differ between two runs of one snippet
# (ids, sizes of different ids, the script's name): compared by presence only.
PRESENCE_ONLY_METADATA = frozenset({"mlflow.sourceRun", "mlflow.trace.sizeStats",
                                    "mlflow.trace.sizeBytes", "mlflow.source.name"})


def run_snippet(source: str) -> None:
    exec(compile(source, "<snippet>", "exec"), {"__name__": "snippet"})


def _value(x: Any) -> Any:
    return getattr(x, "value", x)  # MLflow's enums: TraceState.OK, SpanStatusCode.OK


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def comparable(trace: Any, *, ignore_metadata: frozenset[str] = frozenset(),
               ignore_tags: frozenset[str] = frozenset(),
               unset_is_ok: bool = False) -> dict[str, Any]:
    """What a user reads back from a trace, the same way for routetrace's and MLflow's
    ``Trace`` (their read APIs have the same shape): names, types, parents by name, inputs,
    outputs, attributes, status, events, previews, tags and metadata.

    ``unset_is_ok``: a span that ended without a status is UNSET in the local store (as
    OpenTelemetry has it) and OK in MLflow's (docs/mlflow-compat.md).
    """

    def status(span: Any) -> str:
        code = str(_value(span.status.status_code))
        return "OK" if unset_is_ok and code == "UNSET" else code

    info = trace.info
    names = {s.span_id: s.name for s in trace.data.spans}
    metadata = {
        k: ("<present>" if k in PRESENCE_ONLY_METADATA else v)
        for k, v in info.trace_metadata.items()
        if k not in ignore_metadata and not k.startswith(("routetrace.", "mlflow.source.git."))
    }
    return {
        "state": str(_value(info.state)),
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
        "client_request_id": info.client_request_id,
        "tags": {k: v for k, v in info.tags.items()
                 if k not in VOLATILE_TAGS and k not in ignore_tags},
        "metadata": metadata,
        "spans": sorted(
            (
                s.name,
                str(_value(s.span_type)),
                names.get(s.parent_id),
                _json(s.inputs),
                _json(s.outputs),
                _json({k: v for k, v in s.attributes.items() if k not in FIELD_ATTRIBUTES
                       and k != "mlflow.spanLogLevel"}),
                status(s),
                _json([(e.name, {k: v for k, v in e.attributes.items()
                                 if k != "exception.stacktrace"}) for e in s.events]),
            )
            for s in trace.data.spans
        ),
    }
