"""The export counts: what happened to every trace this process produced."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExportStats"]


@dataclass
class ExportStats:
    """What happened to the traces this process produced."""

    queued: int = 0  # accepted onto the queue
    written: int = 0  # stored by a backend
    dropped: int = 0  # refused because the queue was full
    retried: int = 0  # write attempts that failed and were retried
    spooled: int = 0  # written to the spool file for a later replay
    replayed: int = 0  # spooled traces written after the backend recovered
    failed: int = 0  # could not even be built or spooled (logged)
    pending: int = 0  # waiting: on the queue, being written, or in the retry list

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def with_pending(self, pending: int) -> dict[str, int]:
        """The counts with ``pending`` traces still waiting; every accepted trace is in exactly
        one of written, spooled, failed and pending, so ``queued`` is their sum."""
        counts = self.to_dict()
        counts["pending"] = pending
        counts["queued"] = self.written + self.spooled + self.failed + pending
        return counts
