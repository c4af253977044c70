"""What acts on the process's tracer: switches (enable, disable, span processors, async
logging), flush and counts, where traces go (``set_destination``), runs (``start_run``), and
carrying the current trace into other threads."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from routetrace.core import processors as processors_mod
from routetrace.core.destination import Experiment, set_context_destination
from routetrace.core.runs import ActiveRun, RunInfo, enter_run, leave_run
from routetrace.core.tracer import get_tracer

__all__ = [
    "TracedThreadPoolExecutor",
    "configure",
    "copy_context_to",
    "disable",
    "enable",
    "enable_async_logging",
    "flush",
    "get_export_stats",
    "is_enabled",
    "set_destination",
    "start_run",
]


class _ConfigScope:
    """What ``configure`` returns: ignore it, or use it as ``with routetrace.configure(...):``
    to put the previous processors back on exit (as MLflow's ``configure`` does)."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[Callable[[Any], None], ...]) -> None:
        self._previous = previous

    def __enter__(self) -> _ConfigScope:
        return self

    def __exit__(self, *exc: object) -> None:
        get_tracer().processors = self._previous


def configure(span_processors: list[Callable[[Any], None]] | None = None) -> _ConfigScope:
    """Set the span processors run on every span before export (``fn(span)``, in place).

    >>> with routetrace.configure(span_processors=[redact]):  # only inside the block
    ...     agent.run()
    """
    tracer = get_tracer()
    previous = tracer.processors
    if span_processors is not None:
        tracer.processors = processors_mod.validate(span_processors)
    return _ConfigScope(previous)


def enable() -> None:
    get_tracer().enabled = True


def disable() -> None:
    """Turn tracing off for this process: every API becomes a no-op."""
    get_tracer().enabled = False


def is_enabled() -> bool:
    return get_tracer().enabled


def enable_async_logging(enabled: bool = True) -> None:
    get_tracer().async_logging = bool(enabled)


def flush(timeout: float | None = None) -> bool:
    """Block until every finished trace is written (True) or ``timeout`` passes (False)."""
    return get_tracer().flush(timeout)


def get_export_stats() -> dict[str, int]:
    """Counts of queued, written, dropped, retried, spooled... traces in this process."""
    return get_tracer().stats()


def copy_context_to(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` to run in a copy of the current context (trace, destination, run).

    >>> threading.Thread(target=routetrace.copy_context_to(work)).start()
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


class TracedThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks join the submitting context's trace."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any):  # type: ignore[override]
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)


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
        set_context_destination(destination)
    else:
        get_tracer().global_destination = destination


@contextmanager
def start_run(run_name: str | None = None, experiment: Experiment | None = None,
              experiment_id: str | None = None) -> Iterator[ActiveRun]:
    """Group the traces made inside this block under a new run.

    ``with routetrace.start_run() as run: ...`` then
    ``routetrace.search_traces(run_id=run.info.run_id, return_type="list")``.
    """
    tracer = get_tracer()
    if experiment is None and experiment_id is not None:
        experiment = Experiment(experiment_id=experiment_id)
    destination = experiment or tracer.resolve_destination()
    backend = tracer.backend
    info = backend.resolve_experiment(destination)
    run_id = backend.create_run(info, run_name)
    run = ActiveRun(RunInfo(run_id, info.experiment_id, run_name))
    token = enter_run(run)
    status = "FINISHED"
    try:
        yield run
    except BaseException:
        status = "FAILED"
        raise
    finally:
        leave_run(token)
        try:
            backend.end_run(run_id, status)
        except Exception:
            pass
