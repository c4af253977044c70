"""The store-facing half of the fluent API: where traces are stored, and reading them back,
tagging and deleting them (``search_traces``, ``get_trace``, ``set_trace_tag``...).

It sits above the backends, which the span API in :mod:`routetrace.core.fluent` never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routetrace.backends.base import Backend, check_max_results
from routetrace.core import search_frame
from routetrace.core.destination import DEFAULT_EXPERIMENT, Experiment
from routetrace.core.display import TraceList
from routetrace.core.live_trace import LiveTrace
from routetrace.core.model import Trace, parse_trace_id
from routetrace.core.settings import DEFAULT_TRACKING_URI
from routetrace.core.tracer import get_tracer

__all__ = [
    "GET_TRACE_WAIT_SECONDS",
    "delete_trace_tag",
    "delete_traces",
    "get_trace",
    "get_tracking_uri",
    "running_trace",
    "search_trace_list",
    "search_traces",
    "set_experiment",
    "set_trace_tag",
    "set_tracking_uri",
    "tag_trace",
    "untag_trace",
    "wait_for_own_traces",
]


def set_tracking_uri(uri: str | None) -> None:
    get_tracer().set_tracking_uri(uri)


def get_tracking_uri() -> str:
    return get_tracer().tracking_uri or DEFAULT_TRACKING_URI


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None):
    """Make this experiment the process-wide destination (created if missing); returns it."""
    destination = (
        Experiment(experiment_id=experiment_id) if experiment_id is not None
        else Experiment(name=experiment_name)
    )
    tracer = get_tracer()
    info = _current_backend().resolve_experiment(destination)
    tracer.global_destination = destination
    return info


# -- reading back -------------------------------------------------------------------------
def _experiment_ids(experiment: Any, experiment_ids: list[str] | None) -> list[str] | None:
    if experiment is None:
        return experiment_ids
    backend = _current_backend()
    items = experiment if isinstance(experiment, (list, tuple)) else [experiment]
    ids = list(experiment_ids or [])
    for item in items:
        dest = item if isinstance(item, Experiment) else Experiment(name=str(item))
        try:
            ids.append(backend.resolve_experiment(dest, create=False).experiment_id)
        except Exception as exc:
            if getattr(exc, "retryable", True):
                raise
    return ids


# How long ``get_trace`` waits for this process's own unwritten traces before it answers None.
GET_TRACE_WAIT_SECONDS = 5.0
# Rows fetched per backend call when ``search_traces`` is asked for every match.
_SEARCH_PAGE = 10_000


def _active_experiment_ids() -> list[str] | None:
    """The experiment ``set_experiment`` (or the environment) made active, as MLflow searches
    it by default; None (every experiment) when nothing was chosen."""
    tracer = get_tracer()
    active = tracer.global_destination
    if active is None and tracer.default_destination != DEFAULT_EXPERIMENT:
        active = tracer.default_destination
    if active is None:
        return None
    return _experiment_ids(active, None)


def search_trace_list(
    experiment_ids: list[str] | None = None,
    *,
    filter_string: str | None = None,
    run_id: str | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    include_spans: bool = True,
) -> list[Trace]:
    """Every match (or the first ``max_results``) from the current backend, as a list."""
    if max_results is not None:
        check_max_results(max_results)
    backend = _current_backend()
    found: list[Trace] = []
    while max_results is None or len(found) < max_results:
        want = _SEARCH_PAGE if max_results is None else min(_SEARCH_PAGE, max_results - len(found))
        page = backend.search_traces(
            experiment_ids=experiment_ids, filter_string=filter_string, run_id=run_id,
            max_results=want, order_by=order_by, include_spans=include_spans,
            offset=len(found),
        )
        found.extend(page)
        if len(page) < want:
            break
    return found


def search_traces(
    experiment: Any = None,
    *,
    experiment_ids: list[str] | None = None,
    locations: list[str] | None = None,
    filter_string: str | None = None,
    run_id: str | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    extract_fields: list[str] | None = None,
    return_type: str = "pandas",
    include_spans: bool = True,
    flush: bool = False,
) -> Any:
    """Traces from the current backend, newest first, as MLflow's ``search_traces``.

    ``experiment`` is a name, an ``Experiment`` or a list of them; ``locations`` (or
    ``experiment_ids``) are experiment ids. With none of them, the active experiment
    (``set_experiment``) is searched, or every experiment when none was set.
    ``return_type`` is "pandas" (a DataFrame with MLflow's columns; needs
    ``pip install 'routetrace[pandas]'``) or "list" (``Trace`` objects).
    ``filter_string`` and ``order_by`` use MLflow's syntax; ``max_results=None`` is every match.

    >>> routetrace.search_traces(filter_string="trace.status = 'ERROR'", return_type="list")
    """
    if return_type not in ("pandas", "list"):
        raise ValueError(f"return_type must be 'pandas' or 'list', not {return_type!r}")
    if extract_fields and return_type != "pandas":
        raise ValueError("extract_fields is only supported with return_type='pandas'")
    pandas = search_frame.import_pandas() if return_type == "pandas" else None
    if locations is not None and (
        not isinstance(locations, (list, tuple)) or not all(isinstance(x, str) for x in locations)
    ):
        raise ValueError(f"locations must be a list of experiment ids, not {locations!r}")
    if flush:
        get_tracer().flush(None)
    if experiment is None and experiment_ids is None and not locations:
        ids = _active_experiment_ids()
    else:
        ids = _experiment_ids(experiment, [*(experiment_ids or ()), *(locations or ())] or None)
    traces: list[Trace] = []
    if ids is None or ids:  # an empty list: the named experiments do not exist
        traces = search_trace_list(
            ids, filter_string=filter_string, run_id=run_id, max_results=max_results,
            order_by=order_by, include_spans=include_spans,
        )
    if pandas is not None:
        return search_frame.traces_to_frame(pandas, traces, extract_fields)
    return TraceList(traces)


def get_trace(trace_id: str, silent: bool = False, flush: bool = False) -> Trace | None:
    """The trace with this id, or None.

    A trace this process finished but has not written yet (async logging) is waited for, up
    to ``GET_TRACE_WAIT_SECONDS``, so ``get_trace(get_last_active_trace_id())`` right after a
    traced call finds it. ``silent`` and ``flush`` are MLflow's; the wait makes ``flush``
    unnecessary here.
    """
    tracer = get_tracer()
    found = _current_backend().get_trace(trace_id)
    if found is None:
        # Returns at once when nothing is waiting to be written.
        tracer.flush(None if flush else GET_TRACE_WAIT_SECONDS)
        found = _current_backend().get_trace(trace_id)
    return found


def set_trace_tag(trace_id: str, key: str, value: str) -> None:
    """Tag a trace: a running one (the tag is exported with it) or a stored one."""
    tag_trace(trace_id, key, value, _current_backend)


def delete_trace_tag(trace_id: str, key: str) -> None:
    untag_trace(trace_id, key, _current_backend)


def _current_backend() -> Backend:
    return get_tracer().backend  # type: ignore[return-value]  # a Backend, wired at import


def tag_trace(trace_id: str, key: str, value: str, backend: Callable[[], Backend]) -> None:
    """Tag a running trace in memory (exported with it), else the stored one in ``backend()``."""
    live = running_trace(trace_id)
    if live is not None:
        live.set_tags({key: value})
    else:
        wait_for_own_traces()
        backend().set_trace_tag(trace_id, key, value)


def untag_trace(trace_id: str, key: str, backend: Callable[[], Backend]) -> None:
    live = running_trace(trace_id)
    if live is not None:
        if not live.tags or key not in live.tags:
            raise KeyError(f"trace {trace_id} has no tag {key!r}")
        del live.tags[key]
    else:
        wait_for_own_traces()
        backend().delete_trace_tag(trace_id, key)


def wait_for_own_traces() -> None:
    """A trace this process ended may still be on its way to the store (async logging): let
    it land first, as ``get_trace`` does. Returns at once when nothing is waiting."""
    get_tracer().flush(GET_TRACE_WAIT_SECONDS)


def running_trace(trace_id: str) -> LiveTrace | None:
    """The trace with this id while it runs in this process, else None."""
    wanted = int(parse_trace_id(trace_id)[3:], 16)
    for live in list(get_tracer().live):
        if live.trace_id == wanted and not live.finished:
            return live
    return None


def delete_traces(
    experiment: Any = None,
    *,
    experiment_id: str | None = None,
    max_timestamp_millis: int | None = None,
    max_traces: int | None = None,
    trace_ids: list[str] | None = None,
) -> int:
    """Delete traces of one experiment; returns how many were deleted."""
    ids = _experiment_ids(experiment, [experiment_id] if experiment_id else None)
    if not ids:
        if experiment is None and experiment_id is None:
            raise ValueError("delete_traces needs experiment= or experiment_id=")
        return 0
    return _current_backend().delete_traces(
        experiment_id=ids[0], max_timestamp_millis=max_timestamp_millis,
        max_traces=max_traces, trace_ids=trace_ids,
    )
