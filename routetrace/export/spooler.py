"""The worker's side of the spool: groups that could not be written go to disk, and when a
backend recovers, the files this process spooled for it are written back.

Only this process's own files are replayed automatically: files left by other processes (or
by this one before a restart) wait for ``routetrace push`` / ``replay_spool()``, which a user
runs knowingly. The file format is :mod:`routetrace.export.spool`'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from routetrace.core.build import to_trace
from routetrace.export import spool
from routetrace.export.groups import write_now

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    from routetrace.core.sink import Sink
    from routetrace.export.groups import Group
    from routetrace.export.stats import ExportStats

__all__ = ["Spooler"]

log = logging.getLogger("routetrace")


class Spooler:
    def __init__(self, *, lock: threading.Condition, stats: ExportStats) -> None:
        self._lock = lock  # guards the counters and ``_own``; flush waits on it
        self._stats = stats
        self._own: dict[int, list[Path]] = {}  # id(backend) -> files spooled for it

    def spool(self, group: Group, reason: str) -> None:
        """Write ``group`` to its backend's spool and count it; when even that fails, log and
        count the traces as failed. Never raises."""
        backend = group.backend
        try:
            path = spool.spool_batch(backend.spool_dir, backend.uri, group.destination,
                                     [to_trace(r) for r in group.traces])
        except Exception:
            log.error("routetrace: could not spool %d traces for %s (%s); they are lost",
                      len(group.traces), backend.uri, reason, exc_info=True)
            with self._lock:
                self._stats.failed += len(group.traces)
                self._lock.notify_all()
            return
        log.warning("routetrace: spooled %d traces to %s (%s); replay with "
                    "routetrace.replay_spool() or `routetrace push`",
                    len(group.traces), path, reason)
        with self._lock:
            self._stats.spooled += len(group.traces)
            self._own.setdefault(id(backend), []).append(path)
            self._lock.notify_all()

    def replay_own(self, backend: Sink) -> None:
        """Write back the files this process spooled for ``backend``, oldest first; stop at the
        first failure (the backend is down again) and leave the rest spooled."""
        with self._lock:
            paths = self._own.pop(id(backend), [])
        for path in paths:
            if not path.exists():
                continue  # replayed by hand meanwhile
            # Claimed by renaming first, so a concurrent ``routetrace push`` skips it.
            claimed = path.with_name(f".{path.stem}.replaying-auto")
            try:
                path.replace(claimed)
                header, traces = spool.read_spool_file(claimed)
                write_now(backend, spool.experiment_of(header), traces)
            except Exception as exc:
                if claimed.exists():
                    claimed.replace(path)
                log.warning("routetrace: replaying %s failed (%s); it stays spooled", path, exc)
                return
            claimed.unlink(missing_ok=True)
            with self._lock:
                self._stats.replayed += len(traces)
