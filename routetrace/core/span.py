"""Live spans: the mutable objects user code holds while a trace runs.

A ``LiveSpan`` is also an OpenTelemetry API ``Span``: it is what sits in the OpenTelemetry
context while it is current, so ``opentelemetry.trace.get_current_span()``,
``propagate.inject`` and any OpenTelemetry instrumentation see routetrace's trace and span
ids, and spans they start become children in the same trace.

The request path only records here: ids as integers, ``time_ns`` stamps, references. Hex
formatting, JSON and attribute dictionaries are built later, on the export worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from routetrace.core import serialize
from routetrace.core.model import SpanEvent, SpanStatusCode, format_trace_id

__all__ = ["NO_OP_SPAN", "LiveSpan", "NoOpSpan", "SpanTrace"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = object()


class SpanTrace(Protocol):
    """The trace a span belongs to (``routetrace.core.live_trace.LiveTrace``), as far as the
    span itself uses it: named here so that this module, which the trace's own module
    imports, does not import it back."""

    trace_id: int
    finished: bool

    def end_span(self, span: LiveSpan, end_time_ns: int) -> None: ...


def _status_code(status: Any) -> str:
    """Accept MLflow's strings/enums and OpenTelemetry's Status/StatusCode."""
    if isinstance(status, Status):
        status = status.status_code
    if isinstance(status, StatusCode):
        return status.name
    if isinstance(status, SpanStatusCode):
        return status.value
    code = getattr(status, "status_code", status)
    text = str(getattr(code, "value", code)).upper()
    if text not in ("OK", "ERROR", "UNSET"):
        raise ValueError(f"span status must be 'OK', 'ERROR' or 'UNSET', not {status!r}")
    return text


class LiveSpan(otel_trace.Span):
    """A span being recorded. Methods follow MLflow's ``LiveSpan`` and OpenTelemetry's ``Span``."""

    __slots__ = (
        "_attributes",
        "_deferred",
        "_events",
        "_inputs_json",
        "_name",
        "_outputs_json",
        "_span_context",
        "_span_type",
        "_status",
        "_status_description",
        "end_time_ns",
        "parent_span_id",
        "span_id_int",
        "start_time_ns",
        "trace",
    )

    def __init__(
        self,
        trace: SpanTrace,
        span_id: int,
        parent_span_id: int | None,
        name: str,
        span_type: str,
        start_time_ns: int,
    ) -> None:
        self.trace = trace
        self.span_id_int = span_id
        self.parent_span_id = parent_span_id
        self._name = name
        self._span_type = span_type
        self.start_time_ns = start_time_ns
        self.end_time_ns: int | None = None
        self._status = "UNSET"
        self._status_description = ""
        self._attributes: dict[str, Any] | None = None
        self._events: list[SpanEvent] | None = None
        self._inputs_json: str | None = None
        self._outputs_json: str | None = None
        self._span_context: SpanContext | None = None
        # Work the request path postponed (the middleware's request/response capture);
        # the export worker calls it before span processors run. It may return the
        # attributes it set, when they are all of clean plain values (see core/build.py).
        self._deferred: Callable[[LiveSpan], dict[str, Any] | None] | None = None

    # -- identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def span_id(self) -> str:
        return f"{self.span_id_int:016x}"

    @property
    def parent_id(self) -> str | None:
        return None if self.parent_span_id is None else f"{self.parent_span_id:016x}"

    @property
    def trace_id(self) -> str:
        """MLflow's form of the trace id: ``tr-`` and 32 hex digits."""
        return format_trace_id(self.trace.trace_id)

    request_id = trace_id

    @property
    def span_type(self) -> str:
        return self._span_type

    @property
    def is_root(self) -> bool:
        return self.parent_span_id is None

    @property
    def is_ended(self) -> bool:
        return self.end_time_ns is not None

    # -- data -------------------------------------------------------------------------
    @property
    def inputs(self) -> Any:
        return serialize.loads(self._inputs_json)

    @property
    def outputs(self) -> Any:
        return serialize.loads(self._outputs_json)

    @property
    def attributes(self) -> dict[str, Any]:
        return dict(self._attributes or ())

    @property
    def events(self) -> list[SpanEvent]:
        return list(self._events or ())

    @property
    def status(self) -> str:
        return self._status

    @property
    def status_description(self) -> str:
        return self._status_description

    def get_attribute(self, key: str) -> Any:
        return None if self._attributes is None else self._attributes.get(key)

    def set_inputs(self, inputs: Any) -> None:
        # Serialised now, not at export: the application may mutate the object later.
        self._inputs_json = serialize.dumps(inputs)

    def set_outputs(self, outputs: Any) -> None:
        self._outputs_json = serialize.dumps(outputs)

    def set_span_type(self, span_type: str) -> None:
        self._span_type = str(span_type)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._attributes is None:
            self._attributes = {}
        self._attributes[str(key)] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._attributes is None:
            self._attributes = {}
        for key, value in attributes.items():
            self._attributes[str(key)] = value

    def set_status(self, status: Any, description: str | None = None) -> None:
        if isinstance(status, Status) and description is None:
            description = status.description
        self._status = _status_code(status)
        if description:
            self._status_description = str(description)

    def add_event(
        self, event: SpanEvent | str, attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Add an ``SpanEvent`` (MLflow) or ``name, attributes, timestamp`` (OpenTelemetry)."""
        if not isinstance(event, SpanEvent):
            event = SpanEvent(str(event), timestamp or time.time_ns(), dict(attributes or {}))
        elif not event.timestamp:
            event.timestamp = time.time_ns()
        if self._events is None:
            self._events = []
        self._events.append(event)

    def record_exception(
        self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None, escaped: bool = False,
    ) -> None:
        event = SpanEvent.from_exception(exception, timestamp or time.time_ns())
        if attributes:
            event.attributes.update(attributes)
        self.add_event(event)
        message = event.attributes["exception.message"]
        self.set_status("ERROR", f"{type(exception).__name__}: {message}")

    def end(
        self,
        outputs: Any = _UNSET,
        attributes: Mapping[str, Any] | None = None,
        status: Any = None,
        end_time_ns: int | None = None,
        *,
        end_time: int | None = None,
    ) -> None:
        """End the span; on the root span this finishes the trace and hands it off for export.

        Ending a span twice, or a span of a trace the watchdog already aborted, is a no-op.
        """
        if self.end_time_ns is not None:
            return
        if outputs is not _UNSET:
            self.set_outputs(outputs)
        if attributes:
            self.set_attributes(attributes)
        if status is not None:
            self.set_status(status)
        self.trace.end_span(self, end_time_ns or end_time or time.time_ns())

    # -- OpenTelemetry API ------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        ctx = self._span_context
        if ctx is None:
            ctx = self._span_context = SpanContext(
                self.trace.trace_id, self.span_id_int, False, _SAMPLED
            )
        return ctx

    def update_name(self, name: str) -> None:
        self._name = str(name)

    def is_recording(self) -> bool:
        return self.end_time_ns is None and not self.trace.finished

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self._name,
            "span_type": self._span_type,
            "start_time_ns": self.start_time_ns,
            "end_time_ns": self.end_time_ns,
            "status": self._status,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "attributes": self.attributes,
        }

    def __repr__(self) -> str:
        return (
            f"LiveSpan(name={self._name!r}, span_id={self.span_id!r}, "
            f"trace_id={self.trace_id!r}, parent_id={self.parent_id!r})"
        )


class NoOpSpan(otel_trace.NonRecordingSpan):
    """Returned when tracing is disabled or the trace was already aborted: every call is free."""

    def __init__(self) -> None:
        super().__init__(otel_trace.INVALID_SPAN_CONTEXT)

    name = None
    span_id = None
    parent_id = None
    trace_id = None
    request_id = None
    span_type = None
    inputs = None
    outputs = None
    status = None
    start_time_ns = None
    end_time_ns = None
    attributes: dict[str, Any] = {}
    events: Sequence[SpanEvent] = ()

    def set_inputs(self, inputs: Any) -> None:
        return None

    def set_outputs(self, outputs: Any) -> None:
        return None

    def set_span_type(self, span_type: str) -> None:
        return None

    def get_attribute(self, key: str) -> Any:
        return None

    def set_status(self, status: Any, description: str | None = None) -> None:  # type: ignore[override]
        return None

    def add_event(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def record_exception(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def end(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None


NO_OP_SPAN = NoOpSpan()
