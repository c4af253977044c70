"""A finished trace (``trace.info`` and ``trace.data.spans``), as backends store it and
searches return it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routetrace.core.model.kinds import METADATA_CLIENT_REQUEST_ID
from routetrace.core.model.span import Span

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Trace", "TraceData", "TraceInfo", "set_html_renderer"]


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
