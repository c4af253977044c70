"""``start_run()``: a run groups traces, like an MLflow run; traces inside carry its id."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from routetrace.core.destination import Experiment

__all__ = ["ActiveRun", "active_run", "start_run"]

_active_run: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "routetrace_run", default=None
)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str | None


@dataclass(frozen=True)
class ActiveRun:
    info: RunInfo

    @property
    def run_id(self) -> str:  # convenience
        return self.info.run_id


def active_run() -> ActiveRun | None:
    return _active_run.get()


def current_run_id() -> str | None:
    run = _active_run.get()
    return None if run is None else run.info.run_id


@contextmanager
def start_run(run_name: str | None = None, experiment: Experiment | None = None,
              experiment_id: str | None = None) -> Iterator[ActiveRun]:
    """Group the traces made inside this block under a new run.

    ``with routetrace.start_run() as run: ...`` then
    ``routetrace.search_traces(run_id=run.info.run_id, return_type="list")``.
    """
    from routetrace.core.tracer import get_tracer

    tracer = get_tracer()
    if experiment is None and experiment_id is not None:
        experiment = Experiment(experiment_id=experiment_id)
    destination = experiment or tracer.resolve_destination()
    backend = tracer.backend
    info = backend.resolve_experiment(destination)
    run_id = backend.create_run(info, run_name)
    run = ActiveRun(RunInfo(run_id, info.experiment_id, run_name))
    token = _active_run.set(run)
    status = "FINISHED"
    try:
        yield run
    except BaseException:
        status = "FAILED"
        raise
    finally:
        _active_run.reset(token)
        try:
            backend.end_run(run_id, status)
        except Exception:
            pass
