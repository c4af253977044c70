"""What every command shares: the error and exit codes, argument types, output lines, and
the tracer and backend as the settings and ``--tracking-uri`` make them."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routetrace.backends.base import Backend, ExperimentInfo


EXIT_FAILURE = 1


EXIT_USAGE = 2


PROG = "routetrace"


class CliError(Exception):
    """Reported as one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` as seconds."""
    m = _AGE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use a number and a unit, e.g. 90s, 15m, 12h, 7d, 2w"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


def since_ms(text: str) -> int:
    """``--since``: an age (``7d``), epoch milliseconds, or an ISO date/time."""
    if text.strip().isdigit():
        return int(text.strip())
    try:
        return int((time.time() - parse_age(text)) * 1000)
    except argparse.ArgumentTypeError:
        pass
    try:
        return int(dt.datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --since {text!r}: use an age (7d), epoch milliseconds or an ISO date"
        ) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def port_number(text: str) -> int:
    """A TCP port, checked here so a bad one is a usage line, not a failed bind()."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 0-65535 (0: any free port)")
    return value


def echo(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def echo_error(line: str) -> None:
    sys.stderr.write(f"{PROG}: {line}\n")
    sys.stderr.flush()


def tracer_from(args: argparse.Namespace) -> Any:
    """The process's tracer, with ``--tracking-uri`` applied (settings errors propagate)."""
    from routetrace.core.tracer import get_tracer

    tracer = get_tracer()
    if getattr(args, "tracking_uri", None):
        try:
            tracer.set_tracking_uri(args.tracking_uri)
        except ValueError as exc:
            raise CliError(f"--tracking-uri: {exc}", EXIT_USAGE) from None
    return tracer


def backend_from(args: argparse.Namespace) -> Backend:
    tracer = tracer_from(args)
    try:
        return tracer.backend
    except ValueError as exc:
        raise CliError(f"MLFLOW_TRACKING_URI: {exc}", EXIT_USAGE) from None


def missing_store(backend: Backend) -> bool:
    """A local store nobody has written yet: reading it should not create it."""
    return not backend.exists()


def no_store_hint(backend: Backend) -> None:
    echo_error(f"no traces yet at {backend.uri} (point --tracking-uri or MLFLOW_TRACKING_URI "
               "at the store your app writes to)")


def empty_listing(backend: Backend, args: argparse.Namespace) -> bool:
    """For listing commands: with no store yet, print an empty list (``--json``) and the hint."""
    if not missing_store(backend):
        return False
    if args.json:
        echo("[]")
    no_store_hint(backend)
    return True


def resolve_experiment(backend: Backend, name_or_id: str) -> ExperimentInfo:
    from routetrace.backends.base import BackendError
    from routetrace.core.destination import Experiment

    try:
        return backend.resolve_experiment(Experiment(name=name_or_id), create=False)
    except BackendError as exc:
        if exc.retryable:
            raise
    if name_or_id.isdigit():
        try:
            return backend.resolve_experiment(Experiment(experiment_id=name_or_id), create=False)
        except BackendError as exc:
            if exc.retryable:
                raise
    raise CliError(f"no experiment {name_or_id!r} in {backend.uri} "
                   f"('{PROG} experiments list' shows them)")


def summaries_of(backend: Backend) -> list[dict[str, Any]]:
    summaries = getattr(backend, "experiment_summaries", None)
    if summaries is not None:
        return list(summaries())
    return [{**e.to_dict(), "traces": None, "errors": None, "last_request_time": None}
            for e in backend.list_experiments()]


def count_traces(backend: Backend, experiment_id: str, filter_string: str, cap: int) -> int:
    count = getattr(backend, "count_traces", None)
    if count is not None:
        return int(count(experiment_ids=[experiment_id], filter_string=filter_string))
    return len(backend.search_traces(experiment_ids=[experiment_id], filter_string=filter_string,
                                     max_results=cap, include_spans=False))

