"""A backend as the core and the export worker see it: where a finished trace goes, and
where a run is opened.

A protocol, so that the core and the worker type against it and never import the backends
(``routetrace.backends.base.Backend`` satisfies it): the package's root hands the backend
registry to :func:`routetrace.core.tracer.install`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from routetrace.core.destination import Experiment
    from routetrace.core.model import Trace

__all__ = ["Sink", "SinkExperiment"]


class SinkExperiment(Protocol):
    """An experiment as a backend resolved it."""

    experiment_id: str
    name: str


class Sink(Protocol):
    """A backend, as far as the export worker writes to it."""

    #: A display form of the URI, never with credentials in it.
    uri: str
    #: How many export workers may write to it at once.
    max_concurrency: int
    #: Where batches that could not be written are kept for replay.
    spool_dir: Path

    def resolve_experiment(self, experiment: Experiment, *,
                           create: bool = True) -> SinkExperiment: ...

    def write_records(self, experiment: Any, records: list[Any]) -> None:
        """Write what the worker built (``routetrace.core.build.TraceRecord``s) or traces
        read back from a spool."""
        ...

    def write_traces(self, experiment: Any, traces: list[Trace]) -> None: ...

    def create_run(self, experiment: Any, run_name: str | None) -> str:
        """A new run's id (``start_run``)."""
        ...

    def end_run(self, run_id: str, status: str) -> None: ...
