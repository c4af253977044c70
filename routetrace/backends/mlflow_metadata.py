"""The trace metadata MLflow's own SDK computes when it exports a trace, so a trace sent by
routetrace shows the same columns in MLflow's UI and ``search_traces``.

* ``mlflow.traceInputs`` / ``mlflow.traceOutputs``: the root span's inputs and outputs as the
  JSON MLflow stores them in span attributes, cut to 250 characters with ``...``
  (``BaseMlflowSpanProcessor._update_trace_info``).
* ``mlflow.trace.sizeStats`` / ``mlflow.trace.sizeBytes``: the byte size of each span's JSON in
  MLflow's span form (``Span.to_dict``) and of the trace as a whole, with MLflow's percentiles
  (``add_size_stats_to_trace_metadata``).

It runs on the export worker, once per trace sent to a server: never on the request path.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from routetrace.backends import otlp_encoding as enc
from routetrace.core.model import Span, Trace

__all__ = ["SIZE_BYTES", "SIZE_STATS", "TRACE_INPUTS", "TRACE_OUTPUTS", "io_metadata",
           "size_metadata"]

TRACE_INPUTS = "mlflow.traceInputs"
TRACE_OUTPUTS = "mlflow.traceOutputs"
SIZE_STATS = "mlflow.trace.sizeStats"
SIZE_BYTES = "mlflow.trace.sizeBytes"
_MAX_CHARS = 250  # mlflow/tracing/constant.py: MAX_CHARS_IN_TRACE_INFO_METADATA
_SUFFIX = "..."
_STATUS_NAMES = {"OK": "STATUS_CODE_OK", "ERROR": "STATUS_CODE_ERROR"}


# A value as MLflow stores it in a span attribute (``dump_span_attribute_value``): the encoding
# the OTLP writer uses for it too.
_attribute_json = enc.attribute_json
# A span or a trace info as MLflow measures it (``json.dumps`` with its defaults, ASCII-only:
# not what ``serialize.encoder`` makes). Built once: ``json.dumps`` with options builds a new
# encoder per call, and a trace of n spans makes a few n calls.
_measured_json = json.JSONEncoder(default=str).encode


def _truncated(value: str | None) -> str:
    if not value:
        return ""
    if len(value) > _MAX_CHARS:
        return value[: _MAX_CHARS - len(_SUFFIX)] + _SUFFIX
    return value


def io_metadata(trace: Trace) -> dict[str, str]:
    root = trace.root_span
    if root is None:
        return {}
    inputs = None if root.inputs is None else _attribute_json(root.inputs)
    outputs = None if root.outputs is None else _attribute_json(root.outputs)
    return {TRACE_INPUTS: _truncated(inputs), TRACE_OUTPUTS: _truncated(outputs)}


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _mlflow_span_dict(span: Span, trace: Trace) -> dict[str, Any]:
    """``mlflow.entities.Span.to_dict()`` of this span: OTLP-shaped, attributes JSON text."""
    attributes = {k: _attribute_json(v) for k, v in span.attributes.items()}
    attributes[enc.TRACE_REQUEST_ID] = _attribute_json(trace.info.trace_id)
    attributes[enc.SPAN_TYPE] = _attribute_json(span.span_type)
    if span.inputs is not None:
        attributes[enc.SPAN_INPUTS] = _attribute_json(span.inputs)
    if span.outputs is not None:
        attributes[enc.SPAN_OUTPUTS] = _attribute_json(span.outputs)
    return {
        "trace_id": _b64(enc.trace_id_hex(trace.info.trace_id)),
        "span_id": _b64(span.span_id),
        "parent_span_id": None if span.parent_id is None else _b64(span.parent_id),
        "name": span.name,
        "start_time_unix_nano": span.start_time_ns,
        "end_time_unix_nano": span.end_time_ns,
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": e.attributes}
            for e in span.events
        ],
        "status": {
            "code": _STATUS_NAMES.get(str(span.status.status_code), "STATUS_CODE_UNSET"),
            "message": span.status.description,
        },
        "attributes": attributes,
        "links": [],
    }


def _percentile(ordered: list[int], fraction: float) -> float:
    """Linear interpolation between the two nearest ranks, as MLflow's ``_calculate_percentile``."""
    if not ordered:
        return 0.0
    index = fraction * (len(ordered) - 1)
    lower = int(index)
    if lower + 1 >= len(ordered):
        return ordered[-1]
    weight = index - lower
    return ordered[lower] * (1 - weight) + ordered[lower + 1] * weight


def size_metadata(trace: Trace, info_json: dict[str, Any]) -> dict[str, str]:
    """``sizeStats`` and ``sizeBytes`` for ``trace`` whose info, as sent, is ``info_json``."""
    sizes = [
        len(_measured_json(_mlflow_span_dict(s, trace)).encode())
        for s in trace.data.spans
    ]
    if not sizes:
        return {}
    info_size = len(_measured_json({"info": info_json, "data": {"spans": []}}).encode())
    total = sum(sizes) + info_size + (len(sizes) - 1) * 2  # the ", " between spans
    ordered = sorted(sizes)
    stats = {
        "total_size_bytes": total,
        "num_spans": len(sizes),
        "max": ordered[-1],
        "p25": int(_percentile(ordered, 0.25)),
        "p50": int(_percentile(ordered, 0.50)),
        "p75": int(_percentile(ordered, 0.75)),
    }
    return {SIZE_STATS: json.dumps(stats), SIZE_BYTES: str(total)}
