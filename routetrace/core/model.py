"""The shape of a trace once it is finished: what backends store and what searches return.

It mirrors MLflow's ``Trace`` (``trace.info`` and ``trace.data.spans``) so code written against
MLflow's entities reads the same here. These objects are plain data: the live, mutable spans
of a running trace are :class:`routetrace.core.span.LiveSpan`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "METADATA_CLIENT_REQUEST_ID",
    "METADATA_MODEL_ID",
    "METADATA_SESSION",
    "METADATA_STATE_OVERRIDE",
    "METADATA_USER",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
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


@dataclass
class SpanStatus:
    status_code: str = "UNSET"
    description: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"status_code": str(self.status_code), "description": self.description}


@dataclass
class SpanEvent:
    """Something that happened inside a span (an exception, a timeout, a user marker)."""

    name: str
    timestamp: int = 0  # nanoseconds since the epoch
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "timestamp": self.timestamp, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpanEvent:
        return cls(d["name"], int(d.get("timestamp", 0)), dict(d.get("attributes") or {}))

    @classmethod
    def from_exception(cls, exc: BaseException, timestamp: int = 0) -> SpanEvent:
        import traceback

        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:
            stack = ""
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {type(exc).__qualname__}>"
        return cls(
            "exception",
            timestamp,
            {
                "exception.type": type(exc).__name__,
                "exception.message": message,
                "exception.stacktrace": stack,
            },
        )


_MISSING: Any = object()


class Span:
    """A finished span as stored and read back.

    ``inputs`` and ``outputs`` may be held as the JSON text they were recorded as and decoded
    only when read: the export worker and the local store pass that text straight through.
    """

    __slots__ = (
        "_inputs", "_inputs_json", "_outputs", "_outputs_json", "attributes", "end_time_ns",
        "events", "name", "parent_id", "span_id", "span_type", "start_time_ns", "status",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        name: str,
        span_type: str,
        start_time_ns: int,
        end_time_ns: int | None,
        status: SpanStatus,
        inputs: Any = None,
        outputs: Any = None,
        attributes: dict[str, Any] | None = None,
        events: list[SpanEvent] | None = None,
        *,
        inputs_json: str | None = None,
        outputs_json: str | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.span_type = span_type
        self.start_time_ns = start_time_ns
        self.end_time_ns = end_time_ns
        self.status = status
        self._inputs = _MISSING if inputs_json is not None else inputs
        self._inputs_json = inputs_json
        self._outputs = _MISSING if outputs_json is not None else outputs
        self._outputs_json = outputs_json
        self.attributes = attributes if attributes is not None else {}
        self.events = events if events is not None else []

    @property
    def inputs(self) -> Any:
        if self._inputs is _MISSING:
            self._inputs = json.loads(self._inputs_json)  # type: ignore[arg-type]
        return self._inputs

    @inputs.setter
    def inputs(self, value: Any) -> None:
        self._inputs, self._inputs_json = value, None

    @property
    def outputs(self) -> Any:
        if self._outputs is _MISSING:
            self._outputs = json.loads(self._outputs_json)  # type: ignore[arg-type]
        return self._outputs

    @outputs.setter
    def outputs(self, value: Any) -> None:
        self._outputs, self._outputs_json = value, None

    @property
    def request_id(self) -> str:  # MLflow 2 name
        return self.trace_id

    @property
    def duration_ns(self) -> int | None:
        if self.end_time_ns is None:
            return None
        return self.end_time_ns - self.start_time_ns

    def get_attribute(self, key: str) -> Any:
        return self.attributes.get(key)

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_dict_without_io(), "inputs": self.inputs, "outputs": self.outputs}

    def io_json(self) -> tuple[str, str]:
        """The inputs and outputs as JSON text, without decoding text that is already held."""
        inputs = self._inputs_json if self._inputs_json is not None else _dump(self._inputs)
        outputs = self._outputs_json if self._outputs_json is not None else _dump(self._outputs)
        return inputs, outputs

    def to_json(self) -> str:
        """Compact JSON of ``to_dict()``, splicing inputs/outputs text without re-encoding."""
        if self._inputs_json is None and self._outputs_json is None:
            return _dump(self.to_dict())
        head = _dump(self.to_dict_without_io())
        inputs, outputs = self.io_json()
        return f'{head[:-1]},"inputs":{inputs},"outputs":{outputs}}}'

    def to_dict_without_io(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "span_type": self.span_type,
            "start_time_ns": self.start_time_ns,
            "end_time_ns": self.end_time_ns,
            "status": self.status.to_dict(),
            "attributes": self.attributes,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Span:
        status = d.get("status") or {}
        return cls(
            trace_id=d["trace_id"],
            span_id=d["span_id"],
            parent_id=d.get("parent_id"),
            name=d["name"],
            span_type=d.get("span_type") or "UNKNOWN",
            start_time_ns=int(d["start_time_ns"]),
            end_time_ns=None if d.get("end_time_ns") is None else int(d["end_time_ns"]),
            status=SpanStatus(status.get("status_code", "UNSET"), status.get("description", "")),
            inputs=d.get("inputs"),
            outputs=d.get("outputs"),
            attributes=dict(d.get("attributes") or {}),
            events=[SpanEvent.from_dict(e) for e in d.get("events") or ()],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Span):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Span(name={self.name!r}, span_id={self.span_id!r}, parent_id={self.parent_id!r}, "
            f"span_type={self.span_type!r}, status={self.status.status_code!r})"
        )


_dump = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


@dataclass
class TraceInfo:
    trace_id: str
    experiment_id: str
    request_time: int  # ms since the epoch
    execution_duration: int | None  # ms
    state: str
    experiment_name: str | None = None
    request_preview: str | None = None
    response_preview: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    trace_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str:  # MLflow 2 name
        return self.trace_id

    @property
    def status(self) -> str:  # MLflow 2 name
        return self.state

    @property
    def client_request_id(self) -> str | None:
        return self.trace_metadata.get(METADATA_CLIENT_REQUEST_ID)

    @property
    def timestamp_ms(self) -> int:
        return self.request_time

    @property
    def execution_time_ms(self) -> int | None:
        return self.execution_duration

    @property
    def run_id(self) -> str | None:
        return self.trace_metadata.get("mlflow.sourceRun")

    @property
    def name(self) -> str | None:
        return self.tags.get("mlflow.traceName")

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "request_time": self.request_time,
            "execution_duration": self.execution_duration,
            "state": str(self.state),
            "request_preview": self.request_preview,
            "response_preview": self.response_preview,
            "tags": dict(self.tags),
            "trace_metadata": dict(self.trace_metadata),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceInfo:
        return cls(
            trace_id=d["trace_id"],
            experiment_id=str(d["experiment_id"]),
            experiment_name=d.get("experiment_name"),
            request_time=int(d["request_time"]),
            execution_duration=(
                None if d.get("execution_duration") is None else int(d["execution_duration"])
            ),
            state=d.get("state", "OK"),
            request_preview=d.get("request_preview"),
            response_preview=d.get("response_preview"),
            tags=dict(d.get("tags") or {}),
            trace_metadata=dict(d.get("trace_metadata") or {}),
        )


@dataclass
class TraceData:
    spans: list[Span] = field(default_factory=list)

    @property
    def request(self) -> Any:
        root = self._root()
        return None if root is None else root.inputs

    @property
    def response(self) -> Any:
        root = self._root()
        return None if root is None else root.outputs

    def _root(self) -> Span | None:
        return next((s for s in self.spans if s.parent_id is None), None)


@dataclass
class Trace:
    """A finished trace: ``info`` about it and the ``data.spans`` that make it up."""

    info: TraceInfo
    data: TraceData

    @property
    def root_span(self) -> Span | None:
        return self.data._root()

    def search_spans(
        self,
        span_type: str | None = None,
        name: str | re.Pattern[str] | None = None,
        span_id: str | None = None,
    ) -> list[Span]:
        """The spans matching every criterion given (MLflow's order of arguments); ``name``
        may be a compiled regular expression, matched in full."""
        kind = None if span_type is None else str(span_type)
        return [
            s
            for s in self.data.spans
            if (kind is None or s.span_type == kind)
            and (name is None or (name.fullmatch(s.name) is not None
                                  if isinstance(name, re.Pattern) else s.name == name))
            and (span_id is None or s.span_id == span_id)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info.to_dict(),
            "data": {"spans": [s.to_dict() for s in self.data.spans]},
        }

    def to_json(self, pretty: bool = False) -> str:
        return json.dumps(self.to_dict(), indent=2 if pretty else None, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        return cls(
            TraceInfo.from_dict(d["info"]),
            TraceData([Span.from_dict(s) for s in d.get("data", {}).get("spans", ())]),
        )

    @classmethod
    def from_json(cls, text: str) -> Trace:
        return cls.from_dict(json.loads(text))

    def _repr_html_(self) -> str | None:
        render = _html_renderer
        return None if render is None else render(self)


# How a trace renders in a notebook. The display module sets it when it is imported (the
# package's ``__init__`` imports it), so the data model does not depend on its presentation.
_html_renderer: Callable[[Trace], str | None] | None = None


def set_html_renderer(render: Callable[[Trace], str | None] | None) -> None:
    """Set what ``Trace._repr_html_`` returns for a trace (None: no HTML form)."""
    global _html_renderer
    _html_renderer = render
