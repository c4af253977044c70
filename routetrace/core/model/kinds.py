"""The names a trace is described with, as MLflow defines them: span types, span status
codes, trace states, trace ids (``tr-`` and 32 hex digits) and trace metadata keys."""

from __future__ import annotations

from enum import Enum

__all__ = [
    "METADATA_CLIENT_REQUEST_ID",
    "METADATA_MODEL_ID",
    "METADATA_SESSION",
    "METADATA_STATE_OVERRIDE",
    "METADATA_USER",
    "SpanStatusCode",
    "SpanType",
    "TraceState",
    "format_trace_id",
    "parse_trace_id",
]

TRACE_ID_PREFIX = "tr-"
# Trace metadata keys MLflow defines (mlflow/tracing/constant.py, TraceMetadataKey).
METADATA_MODEL_ID = "mlflow.modelId"
METADATA_SESSION = "mlflow.trace.session"
METADATA_USER = "mlflow.trace.user"
# MLflow keeps the client request id in a field of its own; the stores here keep it as
# metadata under this key and ``TraceInfo.client_request_id`` reads it from there.
METADATA_CLIENT_REQUEST_ID = "routetrace.clientRequestId"
# ``update_current_trace(state=...)``: read (and removed) when the trace is built.
METADATA_STATE_OVERRIDE = "routetrace.stateOverride"


class _StrEnum(str, Enum):
    """Compares and prints as its value, so ``SpanType.LLM == "LLM"`` and f-strings read well."""

    def __str__(self) -> str:
        return self.value


class SpanType(_StrEnum):
    """Span types as MLflow defines them; any string is accepted where a type is taken."""

    LLM = "LLM"
    CHAIN = "CHAIN"
    AGENT = "AGENT"
    TOOL = "TOOL"
    CHAT_MODEL = "CHAT_MODEL"
    RETRIEVER = "RETRIEVER"
    PARSER = "PARSER"
    EMBEDDING = "EMBEDDING"
    RERANKER = "RERANKER"
    MEMORY = "MEMORY"
    WORKFLOW = "WORKFLOW"
    TASK = "TASK"
    GUARDRAIL = "GUARDRAIL"
    EVALUATOR = "EVALUATOR"
    UNKNOWN = "UNKNOWN"


class SpanStatusCode(_StrEnum):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


class TraceState(_StrEnum):
    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"


def format_trace_id(trace_id: int) -> str:
    """MLflow's form of an OpenTelemetry trace id: ``tr-`` and 32 hex digits."""
    return f"{TRACE_ID_PREFIX}{trace_id:032x}"


def parse_trace_id(value: str) -> str:
    """Accept ``tr-<32 hex>`` or bare 32 hex digits; return the ``tr-`` form."""
    text = value.strip()
    if text.startswith(TRACE_ID_PREFIX):
        text = text[len(TRACE_ID_PREFIX) :]
    if len(text) != 32:
        raise ValueError(f"{value!r} is not a trace id (expected tr- and 32 hex digits)")
    try:
        int(text, 16)
    except ValueError:
        raise ValueError(f"{value!r} is not a trace id (expected tr- and 32 hex digits)")
    return TRACE_ID_PREFIX + text.lower()
