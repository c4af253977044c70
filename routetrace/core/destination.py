"""Where a trace goes: an experiment, named or by id, held globally or per context.

The context-local destination lives in a ``ContextVar``: concurrent requests (threads or
asyncio tasks) each see their own, and nothing global is rebuilt per call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["Experiment", "context_destination", "get_context_destination"]


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

# Public, as ``otel_bridge.current_request`` is: the ASGI middleware sets and resets it itself
# for every request whose rule names an experiment, one call each way instead of two.
context_destination: contextvars.ContextVar[Experiment | None] = contextvars.ContextVar(
    "routetrace_destination", default=None
)


def get_context_destination() -> Experiment | None:
    return context_destination.get()


def set_context_destination(destination: Experiment | None) -> contextvars.Token:
    """Set the context-local destination and return the token to reset it (middleware use)."""
    return context_destination.set(destination)


def reset_context_destination(token: contextvars.Token) -> None:
    context_destination.reset(token)
