"""``MlflowClient``: the tracing part of MLflow's client, under the same method names.

Code written as ``client = MlflowClient(); span = client.start_trace("agent")`` runs unchanged
with ``from routetrace import MlflowClient``. Traces started here are the process's own, like
the fluent API's: they go where ``routetrace.set_destination`` / ``set_experiment`` or
``experiment_id=`` send them, through the same export queue.

>>> client = routetrace.MlflowClient()
>>> root = client.start_trace("agent", inputs={"q": "hi"})
>>> child = client.start_span("tool", trace_id=root.trace_id, parent_id=root.span_id)
>>> client.end_span(root.trace_id, child.span_id, outputs=42)
>>> client.end_trace(root.trace_id, outputs={"answer": 42})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from routetrace import search
from routetrace.core.destination import Experiment
from routetrace.core.model import SpanType, Trace
from routetrace.core.span import NO_OP_SPAN, LiveSpan, NoOpSpan
from routetrace.core.tracer import get_tracer

if TYPE_CHECKING:
    from routetrace.backends.base import Backend

__all__ = ["MlflowClient", "PagedList"]


class PagedList(list):
    """One page of results; ``token`` fetches the next (None on the last page), as MLflow's."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


class MlflowClient:
    """The tracing methods of ``mlflow.MlflowClient``.

    ``tracking_uri`` (default: the process's, ``MLFLOW_TRACKING_URI``) is where reads, tags and
    deletes go; traces started here are exported like every other trace of the process.
    """

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        self._tracking_uri = tracking_uri

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri or search.get_tracking_uri()

    def _backend(self) -> Backend:
        tracer = get_tracer()
        if self._tracking_uri is None:
            return tracer.backend
        from routetrace.backends import backend_for_uri

        return backend_for_uri(self._tracking_uri, tracer.settings)

    # -- reading and changing stored traces ------------------------------------------------
    def get_trace(self, trace_id: str, display: bool = True, flush: bool = False) -> Trace:
        """The trace with this id; ``KeyError`` naming it when there is none (MLflow raises)."""
        if self._tracking_uri is None:
            found = search.get_trace(trace_id, flush=flush)
        else:
            found = self._backend().get_trace(trace_id)
        if found is None:
            raise KeyError(f"trace {trace_id!r} not found in {self.tracking_uri}")
        return found

    def search_traces(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        page_token: str | None = None,
        run_id: str | None = None,
        include_spans: bool = True,
        model_id: str | None = None,
        locations: list[str] | None = None,
        flush: bool = False,
    ) -> PagedList:
        """One page of traces of these experiments (ids), newest first; pass the returned
        ``token`` as ``page_token`` for the next page."""
        ids = [*(experiment_ids or ()), *(locations or ())]
        if not ids:
            raise ValueError("MlflowClient.search_traces needs locations= (experiment ids) "
                             "or experiment_ids=")
        if flush:
            get_tracer().flush(None)
        offset = _page_offset(page_token)
        if model_id is not None:
            quoted = str(model_id).replace("'", "''")
            model_clause = f"metadata.`mlflow.modelId` = '{quoted}'"
            filter_string = f"{filter_string} AND {model_clause}" if filter_string \
                else model_clause
        page = self._backend().search_traces(
            experiment_ids=[str(i) for i in ids], filter_string=filter_string, run_id=run_id,
            max_results=max_results, order_by=order_by, include_spans=include_spans,
            offset=offset,
        )
        return PagedList(page, str(offset + len(page)) if len(page) == max_results else None)

    def delete_traces(
        self,
        experiment_id: str,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> int:
        return self._backend().delete_traces(
            experiment_id=str(experiment_id), max_timestamp_millis=max_timestamp_millis,
            max_traces=max_traces, trace_ids=trace_ids,
        )

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Tag a trace, running (in memory, exported with it) or stored."""
        search.tag_trace(trace_id, key, value, self._backend)

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        search.untag_trace(trace_id, key, self._backend)

    # -- building a trace by hand ------------------------------------------------------------
    def start_trace(
        self,
        name: str,
        span_type: str = SpanType.UNKNOWN,
        inputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        experiment_id: str | None = None,
        start_time_ns: int | None = None,
        run_id: str | None = None,
    ) -> LiveSpan | NoOpSpan:
        """Start a new trace and return its root span (not made current: pass its ids on)."""
        destination = None if experiment_id is None else Experiment(experiment_id=experiment_id)
        span = get_tracer().start_span(str(name), str(span_type), parent=None,
                                       trace_destination=destination,
                                       start_time_ns=start_time_ns)
        if span is NO_OP_SPAN:
            return span
        assert isinstance(span, LiveSpan)
        if run_id is not None:
            span.trace.run_id = run_id
        if inputs is not None:
            span.set_inputs(inputs)
        if attributes:
            span.set_attributes(attributes)
        if tags:
            span.trace.set_tags(dict(tags))
        return span

    def start_span(
        self,
        name: str,
        trace_id: str | None = None,
        parent_id: str | None = None,
        span_type: str = SpanType.UNKNOWN,
        inputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
        *,
        request_id: str | None = None,
    ) -> LiveSpan | NoOpSpan:
        """Start a child of span ``parent_id`` in the running trace ``trace_id`` (MLflow 2
        called it ``request_id``; both are taken)."""
        if not get_tracer().enabled:
            return NO_OP_SPAN
        if parent_id is None:
            raise TypeError("start_span() needs parent_id= (the span to start a child of)")
        parent = _live_span(_trace_id(trace_id, request_id), parent_id)
        span = get_tracer().start_span(str(name), str(span_type), parent=parent,
                                       start_time_ns=start_time_ns)
        if span is NO_OP_SPAN:
            return span
        assert isinstance(span, LiveSpan)
        if inputs is not None:
            span.set_inputs(inputs)
        if attributes:
            span.set_attributes(attributes)
        return span

    def end_span(
        self,
        trace_id: str | None = None,
        span_id: str | None = None,
        outputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
        status: Any = "OK",
        end_time_ns: int | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        if not get_tracer().enabled:
            return
        if span_id is None:
            raise TypeError("end_span() needs span_id= (the span to end)")
        span = _live_span(_trace_id(trace_id, request_id), span_id)
        if outputs is not None:
            span.set_outputs(outputs)
        span.end(attributes=attributes, status=status, end_time_ns=end_time_ns)

    def end_trace(
        self,
        trace_id: str | None = None,
        outputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
        status: Any = "OK",
        end_time_ns: int | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        """End the root span of ``trace_id``, which hands the trace off for export."""
        if not get_tracer().enabled:
            return
        trace_id = _trace_id(trace_id, request_id)
        live = search.running_trace(trace_id)
        if live is None or live.root is None:
            raise KeyError(f"trace {trace_id!r} is not running in this process "
                           "(already ended, or started elsewhere)")
        root = live.root
        if outputs is not None:
            root.set_outputs(outputs)
        root.end(attributes=attributes, status=status, end_time_ns=end_time_ns)


def _trace_id(trace_id: str | None, request_id: str | None) -> str:
    if trace_id is None and request_id is None:
        raise TypeError("pass trace_id= (request_id= in MLflow 2)")
    if trace_id is not None and request_id is not None and trace_id != request_id:
        raise TypeError(f"trace_id={trace_id!r} and request_id={request_id!r} disagree")
    return trace_id or request_id  # type: ignore[return-value]


def _page_offset(page_token: str | None) -> int:
    if page_token is None:
        return 0
    if not page_token.isdigit():
        raise ValueError(f"page_token {page_token!r} is not one search_traces returned")
    return int(page_token)


def _live_span(trace_id: str, span_id: str) -> LiveSpan:
    live = search.running_trace(trace_id)
    if live is None:
        raise KeyError(f"trace {trace_id!r} is not running in this process "
                       "(already ended, or started elsewhere)")
    for span in live.spans:
        if span.span_id == span_id:
            return span
    raise KeyError(f"span {span_id!r} is not in running trace {trace_id!r}")
