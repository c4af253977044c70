"""``replay_spool()``: write spooled batches (traces the export could not write) to a backend.

``routetrace spool replay`` calls it; ``routetrace push`` sends a store's spool along with the
store instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from routetrace.backends import backend_for_uri
from routetrace.export.spool import experiment_of, read_spool_file, spooled_files

if TYPE_CHECKING:
    from routetrace.backends.base import Backend

__all__ = ["ReplayResult", "replay_spool"]

log = logging.getLogger("routetrace")


@dataclass
class ReplayResult:
    files: int = 0
    traces: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def replay_spool(spool_dir: str | os.PathLike[str] | None = None,
                 backend: Backend | None = None) -> ReplayResult:
    """Write every spooled batch to its backend (or to ``backend``), deleting each once written.

    With no ``spool_dir``, the spool of the current tracking URI's backend is replayed.
    """
    if spool_dir is None:
        from routetrace.core.tracer import get_tracer

        spool_dir = get_tracer().spool_dir()
    result = ReplayResult()
    for path in spooled_files(Path(spool_dir)):
        claimed = path.with_name(f".{path.stem}.replaying-{os.getpid()}")
        try:
            os.replace(path, claimed)
        except FileNotFoundError:
            continue  # another process took it
        try:
            header, traces = read_spool_file(claimed)
            target = backend or backend_for_uri(header["backend"])
            info = target.resolve_experiment(experiment_of(header))
            for trace in traces:
                trace.info.experiment_id = info.experiment_id
                trace.info.experiment_name = info.name
            target.write_traces(info, traces)
        except Exception as exc:
            os.replace(claimed, path)  # give it back for the next replay
            result.failed.append(f"{path.name}: {exc}")
            log.warning("routetrace: replaying %s failed: %s", path, exc)
            continue
        claimed.unlink(missing_ok=True)
        result.files += 1
        result.traces += len(traces)
    return result
