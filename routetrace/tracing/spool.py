"""Batches that could not be written, kept on disk until they can be replayed.

One file per batch (JSON lines: a header naming the backend and experiment, then one trace
per line), written to a temporary name and renamed, so a crash never leaves half a batch.
A replay claims a file by renaming it before writing, so two processes replaying the same
spool never write a batch twice; the stores are idempotent per trace id besides.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from routetrace.tracing.destination import Experiment
from routetrace.tracing.model import Trace

if TYPE_CHECKING:
    from routetrace.backends.base import Backend

__all__ = ["ReplayResult", "replay_spool", "spool_batch", "spooled_files"]

log = logging.getLogger("routetrace")

_SUFFIX = ".jsonl"
_counter = 0


def spool_batch(spool_dir: Path, backend_uri: str, experiment: Experiment,
                traces: list[Trace]) -> Path:
    """Write one batch to ``spool_dir``; returns the file."""
    global _counter
    _counter += 1
    spool_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{os.getpid()}-{_counter}"
    tmp = spool_dir / f".{name}.tmp"
    final = spool_dir / f"{name}{_SUFFIX}"
    header = {
        "routetrace_spool": 1,
        "backend": backend_uri,
        "experiment": {"name": experiment.name, "experiment_id": experiment.experiment_id},
        "count": len(traces),
    }
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(header) + "\n")
        for trace in traces:
            fh.write(json.dumps(trace.to_dict()) + "\n")  # ASCII: any text survives
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def spooled_files(spool_dir: Path) -> list[Path]:
    if not spool_dir.is_dir():
        return []
    return sorted(p for p in spool_dir.iterdir() if p.name.endswith(_SUFFIX) and p.is_file()
                  and not p.name.startswith("."))


def read_spool_file(path: Path) -> tuple[dict, list[Trace]]:
    with open(path, encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        if header.get("routetrace_spool") != 1:
            raise ValueError(f"{path} is not a routetrace spool file")
        traces = [Trace.from_json(line) for line in fh if line.strip()]
    return header, traces


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
    from routetrace.backends import backend_for_uri

    if spool_dir is None:
        from routetrace.tracing.tracer import get_tracer

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
            exp = header["experiment"]
            destination = (
                Experiment(name=exp["name"]) if exp.get("name")
                else Experiment(experiment_id=exp["experiment_id"])
            )
            info = target.resolve_experiment(destination)
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


_SUMMARY_SUFFIX = ".export-summary.json"
_SUMMARY_KEYS = ("dropped", "failed", "spooled", "written")


def record_export_summary(spool_dir: Path, stats: dict[str, int]) -> Path:
    """Leave a process's export counts beside its spool at shutdown (``routetrace stats``
    sums them): the drop count is otherwise gone with the process that counted it."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{time.time_ns()}-{os.getpid()}{_SUMMARY_SUFFIX}"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({k: int(stats.get(k, 0)) for k in _SUMMARY_KEYS}),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def export_summaries(spool_dir: Path) -> dict[str, int]:
    """The export counts left by processes that shut down with drops or failures, summed."""
    total = dict.fromkeys(("processes", *_SUMMARY_KEYS), 0)
    if not spool_dir.is_dir():
        return total
    for path in spool_dir.glob(f"*{_SUMMARY_SUFFIX}"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            counts = {k: int(data.get(k, 0)) for k in _SUMMARY_KEYS}
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        total["processes"] += 1
        for k, v in counts.items():
            total[k] += v
    return total
