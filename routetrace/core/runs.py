"""A run groups traces, like an MLflow run; traces made inside carry its id.

The run current in this context lives here; ``start_run`` (in :mod:`routetrace.core.control`)
opens one in the backend."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["ActiveRun", "RunInfo", "active_run", "current_run_id", "enter_run", "leave_run"]

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


def enter_run(run: ActiveRun) -> contextvars.Token:
    """Make ``run`` current in this context; returns the token for ``leave_run``."""
    return _active_run.set(run)


def leave_run(token: contextvars.Token) -> None:
    _active_run.reset(token)
