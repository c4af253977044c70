"""Groups: the finished traces bound for one backend and experiment, built and written together.

A group is the unit the worker writes, retries and spools. Each trace is built once into its
record (deferred captures, the span processors bound when it ended) before it joins a group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from routetrace.core.build import TraceRecord, record_trace

if TYPE_CHECKING:
    from collections.abc import Iterable

    from routetrace.core.destination import Experiment
    from routetrace.core.live_trace import LiveTrace
    from routetrace.core.model import Trace
    from routetrace.core.sink import Sink

__all__ = ["Group", "Grouped", "build", "group_traces", "write_now"]

log = logging.getLogger("routetrace")


@dataclass
class Group:
    """Traces for one (backend, experiment), with the state of their retries."""

    backend: Sink
    destination: Experiment
    traces: list[TraceRecord]
    seqs: list[int]  # queue sequence numbers: flush waits on the smallest
    first_failure: float = 0.0  # monotonic time of the first failed write, 0 before
    next_attempt: float = 0.0
    attempts: int = 0
    error: str = ""
    min_seq: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_seq = min(self.seqs) if self.seqs else 0

    def absorb(self, other: Group) -> None:
        """Take ``other``'s traces into this group; the earliest failure of the two counts
        towards the retry timeout."""
        self.traces.extend(other.traces)
        self.seqs.extend(other.seqs)
        self.min_seq = min(self.min_seq, other.min_seq)
        failures = [f for f in (self.first_failure, other.first_failure) if f]
        self.first_failure = min(failures, default=0.0)


class Grouped(NamedTuple):
    groups: list[Group]
    failed: int  # traces that could not be built (logged and dropped)


def build(live: LiveTrace) -> TraceRecord | None:
    """The trace's record, or None (logged) when building it fails; the live trace's buffers
    are released either way."""
    try:
        return record_trace(live, live.processors)  # processors bound when the trace ended
    except Exception:
        log.warning("routetrace: could not build trace %032x; dropped it", live.trace_id,
                    exc_info=True)
        return None
    finally:
        live.release()


def group_traces(batch: Iterable[LiveTrace]) -> Grouped:
    """Build every trace and group the records by (backend, experiment), in queue order."""
    groups: dict[tuple[int, str], Group] = {}
    failed = 0
    for live in batch:
        record = build(live)
        if record is None:
            failed += 1
            continue
        key = (id(live.backend), live.destination.key)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(live.backend, live.destination, [], [])
        group.traces.append(record)
        group.seqs.append(live.seq)
    for group in groups.values():
        group.min_seq = min(group.seqs)
    return Grouped(list(groups.values()), failed)


def write_now(backend: Sink, destination: Experiment,
              records: list[TraceRecord] | list[Trace]) -> None:
    """Resolve the experiment and write: the one write path, shared by workers, sync mode and
    the replay of a spool (which holds traces)."""
    backend.write_records(backend.resolve_experiment(destination), records)
