"""Where a trace goes: an experiment, named or by id, held globally or per context.

The context-local destination lives in a ``ContextVar``: concurrent requests (threads or
asyncio tasks) each see their own, and nothing global is rebuilt per call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["Experiment", "get_context_destination", "set_destination"]


@dataclass(frozen=True)
class Experiment:
    """An MLflow experiment as a destination: ``Experiment(name=...)`` or ``experiment_id=...``."""

    name: str | None = None
    experiment_id: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.experiment_id is None):
            raise ValueError(
                "Experiment needs exactly one of name= or experiment_id=, "
                f"got name={self.name!r}, experiment_id={self.experiment_id!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError(f"Experiment name must be a non-empty string, not {self.name!r}")
        if self.experiment_id is not None:
            if isinstance(self.experiment_id, int) and not isinstance(self.experiment_id, bool):
                object.__setattr__(self, "experiment_id", str(self.experiment_id))
            elif not isinstance(self.experiment_id, str) or not self.experiment_id.strip():
                raise ValueError(
                    f"experiment_id must be a non-empty string, not {self.experiment_id!r}"
                )

    @property
    def key(self) -> str:
        """A stable key for grouping batches and caching resolution."""
        return f"name:{self.name}" if self.name is not None else f"id:{self.experiment_id}"

    def __str__(self) -> str:
        return self.name if self.name is not None else f"#{self.experiment_id}"


DEFAULT_EXPERIMENT = Experiment(name="Default")

_context_destination: contextvars.ContextVar[Experiment | None] = contextvars.ContextVar(
    "routetrace_destination", default=None
)


def get_context_destination() -> Experiment | None:
    return _context_destination.get()


def set_context_destination(destination: Experiment | None) -> contextvars.Token:
    """Set the context-local destination and return the token to reset it (middleware use)."""
    return _context_destination.set(destination)


def reset_context_destination(token: contextvars.Token) -> None:
    _context_destination.reset(token)


def set_destination(destination: Experiment | None, *, context_local: bool = False) -> None:
    """Send traces started from now on to ``destination``.

    With ``context_local=True`` only the current context (this asyncio task, this thread, or a
    ``contextvars.copy_context()`` of it) is affected; otherwise the process-wide default.
    """
    if (destination is not None and not isinstance(destination, Experiment)
            and isinstance(getattr(destination, "experiment_id", None), (str, int))):
        # MLflow's own destination objects (``MlflowExperimentLocation(experiment_id=...)``,
        # ``mlflow.tracing.destination.MlflowExperiment``) name the experiment by id.
        destination = Experiment(experiment_id=destination.experiment_id)
    if destination is not None and not isinstance(destination, Experiment):
        raise TypeError(
            "set_destination() takes routetrace.Experiment(name=...) or "
            f"Experiment(experiment_id=...), not {type(destination).__name__}"
        )
    if context_local:
        _context_destination.set(destination)
    else:
        from routetrace.core.tracer import get_tracer

        get_tracer().global_destination = destination
