"""The contract every backend keeps, so the export pipeline, the CLI and the viewer can use
the local store, an MLflow server or an OTLP collector alike."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from routetrace.core.build import TraceRecord, record_of, to_trace
from routetrace.core.destination import Experiment
from routetrace.core.model import Trace

__all__ = [
    "Backend",
    "BackendError",
    "ExperimentInfo",
    "LabelledExperiments",
    "TraceQuery",
    "TraceSelection",
    "UnsupportedOperation",
    "check_delete_arguments",
    "check_max_results",
    "check_positive_int",
    "records_of",
]


class BackendError(Exception):
    """A write or read failed.

    ``retryable`` says whether trying again can help (a timeout, a 503) or not (a 400); the
    export pipeline retries the former until the retry timeout and spools both.
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class UnsupportedOperation(BackendError):
    """The backend cannot do this at all (e.g. searching an OTLP collector)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class ExperimentInfo:
    experiment_id: str
    name: str
    creation_time: int | None = None
    lifecycle_stage: str = "active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "creation_time": self.creation_time,
            "lifecycle_stage": self.lifecycle_stage,
        }


class TraceQuery(NamedTuple):
    """A search's arguments, checked once by :meth:`Backend.search_traces`."""

    experiment_ids: list[str] | None
    filter_string: str | None
    run_id: str | None
    max_results: int
    order_by: list[str] | None
    include_spans: bool
    offset: int


class TraceSelection(NamedTuple):
    """Which traces of one experiment a delete removes, checked once by
    :meth:`Backend.delete_traces`: ``trace_ids``, or a time and/or count bound."""

    experiment_id: str
    max_timestamp_millis: int | None
    max_traces: int | None
    trace_ids: list[str] | None


class Backend(abc.ABC):
    #: A display form of the URI, never with credentials in it.
    uri: str
    #: How many export workers may write to it at once (SQLite: one writer is fastest).
    max_concurrency: int = 1
    #: Where batches that could not be written are kept for replay.
    spool_dir: Path

    @abc.abstractmethod
    def resolve_experiment(self, experiment: Experiment, *, create: bool = True) -> ExperimentInfo:
        """Find (and by default create) the experiment; implementations cache the answer."""

    @abc.abstractmethod
    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        """Write a batch of traces of one experiment; idempotent per trace id."""

    def write_records(self, experiment: ExperimentInfo,
                      records: list[TraceRecord] | list[Trace]) -> None:
        """Write what the export worker built (:func:`~routetrace.core.build.record_trace`).

        A backend that turns a record straight into its final form (the local store's row,
        an OTLP payload) overrides this; by default the backend gets :class:`Trace` objects,
        stamped with the experiment.
        """
        traces = []
        for item in records:
            if item.__class__ is TraceRecord:
                traces.append(to_trace(item, experiment.experiment_id,  # type: ignore[arg-type]
                                       experiment.name))
            else:
                item.info.experiment_id = experiment.experiment_id  # type: ignore[union-attr]
                item.info.experiment_name = experiment.name  # type: ignore[union-attr]
                traces.append(item)
        self.write_traces(experiment, traces)

    def search_traces(
        self,
        *,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = None,
        run_id: str | None = None,
        max_results: int = 100,
        order_by: list[str] | None = None,
        include_spans: bool = True,
        offset: int = 0,
    ) -> list[Trace]:
        """The one entry point of every backend's search: the arguments are checked here, so
        each backend implements only :meth:`_search_traces`."""
        check_max_results(max_results)
        return self._search_traces(TraceQuery(experiment_ids, filter_string, run_id,
                                              max_results, order_by, include_spans, offset))

    def _search_traces(self, query: TraceQuery) -> list[Trace]:
        raise UnsupportedOperation(f"{self.uri} cannot be searched")

    def get_trace(self, trace_id: str) -> Trace | None:
        raise UnsupportedOperation(f"{self.uri} cannot be read back")

    def delete_traces(
        self,
        *,
        experiment_id: str,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
        trace_ids: list[str] | None = None,
    ) -> int:
        """The one entry point of every backend's delete, with MLflow's argument rules
        checked here; each backend implements only :meth:`_delete_traces`."""
        check_delete_arguments(max_timestamp_millis, max_traces, trace_ids)
        return self._delete_traces(TraceSelection(experiment_id, max_timestamp_millis,
                                                  max_traces, trace_ids))

    def _delete_traces(self, selection: TraceSelection) -> int:
        raise UnsupportedOperation(f"{self.uri} does not support deleting traces")

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Set one tag on a stored trace (``KeyError`` naming it when there is no such trace)."""
        raise UnsupportedOperation(f"{self.uri} does not support trace tags")

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        raise UnsupportedOperation(f"{self.uri} does not support trace tags")

    def list_experiments(self) -> list[ExperimentInfo]:
        raise UnsupportedOperation(f"{self.uri} cannot list experiments")

    def create_run(self, experiment: ExperimentInfo, run_name: str | None) -> str:
        import uuid

        return uuid.uuid4().hex

    def end_run(self, run_id: str, status: str) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {}

    def exists(self) -> bool:
        """False only for a local store nothing has written to yet, so reading commands can
        say so instead of creating it; the other backends have nothing local to find."""
        return True

    def before_fork(self) -> None:  # noqa: B027 - optional hook
        """Called in the parent just before ``os.fork``: finish anything in progress."""

    def after_fork_in_parent(self) -> None:  # noqa: B027 - optional hook
        """Called in the parent right after ``os.fork``."""

    def after_fork(self) -> None:
        """Drop connections inherited from the parent process."""
        return

    def close(self) -> None:
        return None


def records_of(items: list[TraceRecord] | list[Trace]) -> list[TraceRecord]:
    """What the worker built, as it is, and traces read back (a spool, a push) as records."""
    return [item if item.__class__ is TraceRecord else record_of(item)  # type: ignore[misc]
            for item in items]


def check_positive_int(name: str, value: int) -> None:
    """A count argument: an ``int`` of at least 1 (``True`` is refused: surely a mistake)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def check_max_results(max_results: int) -> None:
    """The ``max_results`` rule every backend's ``search_traces`` shares."""
    check_positive_int("max_results", max_results)


def check_delete_arguments(
    max_timestamp_millis: int | None, max_traces: int | None, trace_ids: list[str] | None
) -> None:
    """The argument rules every backend's ``delete_traces`` shares (MLflow's)."""
    if trace_ids is not None and (max_timestamp_millis is not None or max_traces is not None):
        raise ValueError("pass either trace_ids or max_timestamp_millis/max_traces, not both")
    if trace_ids is None and max_timestamp_millis is None and max_traces is None:
        raise ValueError(
            "delete_traces needs trace_ids=, max_timestamp_millis= or max_traces= "
            "(refusing to delete a whole experiment by accident)"
        )
    if max_traces is not None and (not isinstance(max_traces, int) or max_traces < 1):
        raise ValueError(f"max_traces must be a positive integer, not {max_traces!r}")


class LabelledExperiments:
    """For sinks with no experiments of their own (OTLP collectors, files): the experiment's
    name (or id) is carried as a label, so resolving never fails and needs no I/O."""

    _experiments: dict[str, ExperimentInfo]

    def resolve_experiment(self, experiment: Experiment, *, create: bool = True) -> ExperimentInfo:
        info = self._experiments.get(experiment.key)
        if info is None:
            name = experiment.name or f"experiment-{experiment.experiment_id}"
            exp_id = str(experiment.experiment_id) if experiment.experiment_id else name
            info = self._experiments[experiment.key] = ExperimentInfo(exp_id, name)
        return info
