"""A finished span as stored and read back, with its status and events. The live, mutable
spans of a running trace are :class:`routetrace.core.span.LiveSpan`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from routetrace.core import serialize

__all__ = ["Span", "SpanEvent", "SpanStatus"]


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
        """The inputs and outputs as JSON text, without decoding text that is already held;
        values are encoded as the tracer records them (``serialize.dumps``), so a trace
        replayed from a spool carries the same text as one sent first hand."""
        inputs = (self._inputs_json if self._inputs_json is not None
                  else serialize.dumps(self._inputs))
        outputs = (self._outputs_json if self._outputs_json is not None
                   else serialize.dumps(self._outputs))
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
