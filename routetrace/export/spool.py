"""Batches that could not be written, kept on disk until they can be replayed.

One file per batch (JSON lines: a header naming the backend and experiment, then one trace
per line), written to a temporary name and renamed, so a crash never leaves half a batch.
A replay claims a file by renaming it before writing, so two processes replaying the same
spool never write a batch twice; the stores are idempotent per trace id besides.

When the spool directory cannot be written (a read-only store, a full disk), batches and
export summaries go to a fallback directory under the system's temporary directory, one per
spool directory (``fallback_dir``); everything that reads a spool reads both, so the traces
are still replayed and counted, and the log says where they went.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from routetrace.core.destination import Experiment
from routetrace.core.model import Trace

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "experiment_of",
    "export_summaries",
    "fallback_dir",
    "read_spool_file",
    "record_export_summary",
    "spool_batch",
    "spooled_files",
]

log = logging.getLogger("routetrace")

_SUFFIX = ".jsonl"
_counter = 0


def fallback_dir(spool_dir: Path) -> Path:
    """Where batches for ``spool_dir`` go when it cannot be written: a directory of its own
    under the temporary directory, named after ``spool_dir`` so that readers find it."""
    key = os.path.abspath(spool_dir)
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"routetrace-{user}" / "spool-fallback" / digest


def _spool_dirs(spool_dir: Path) -> list[Path]:
    return [spool_dir, fallback_dir(spool_dir)]


def _write_with_fallback(spool_dir: Path, write: Callable[[Path], Path], what: str) -> Path:
    """``write(directory)`` into ``spool_dir``, else into its fallback (logged); raises the
    fallback's error when neither can be written."""
    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
        return write(spool_dir)
    except OSError as exc:
        other = fallback_dir(spool_dir)
        other.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = write(other)
        log.warning("routetrace: cannot write %s to %s (%s); wrote it to %s instead (`routetrace"
                    " stats` and `routetrace spool replay` read both)", what, spool_dir,
                    exc.strerror or exc, path)
        return path


def spool_batch(spool_dir: Path, backend_uri: str, experiment: Experiment,
                traces: list[Trace]) -> Path:
    """Write one batch to ``spool_dir`` (or its fallback); returns the file."""
    global _counter
    _counter += 1
    name = f"{time.time_ns()}-{os.getpid()}-{_counter}"
    header = {
        "routetrace_spool": 1,
        "backend": backend_uri,
        "experiment": {"name": experiment.name, "experiment_id": experiment.experiment_id},
        "count": len(traces),
    }
    lines = [json.dumps(header), *(json.dumps(t.to_dict()) for t in traces)]  # ASCII

    def write(directory: Path) -> Path:
        tmp = directory / f".{name}.tmp"
        final = directory / f"{name}{_SUFFIX}"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not keep half a batch
            raise
        return final

    return _write_with_fallback(spool_dir, write, f"a batch of {len(traces)} traces")


def spooled_files(spool_dir: Path) -> list[Path]:
    """The spooled batches of ``spool_dir`` and of its fallback, oldest first."""
    found = []
    for directory in _spool_dirs(spool_dir):
        if directory.is_dir():
            found.extend(p for p in directory.iterdir() if p.name.endswith(_SUFFIX)
                         and p.is_file() and not p.name.startswith("."))
    return sorted(found, key=lambda p: p.name)


def read_spool_file(path: Path) -> tuple[dict, list[Trace]]:
    with open(path, encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        if header.get("routetrace_spool") != 1:
            raise ValueError(f"{path} is not a routetrace spool file")
        traces = [Trace.from_json(line) for line in fh if line.strip()]
    return header, traces


def experiment_of(header: dict) -> Experiment:
    """The experiment a spooled batch was meant for (its header names it or gives its id)."""
    exp = header["experiment"]
    if exp.get("name"):
        return Experiment(name=exp["name"])
    return Experiment(experiment_id=exp["experiment_id"])


_SUMMARY_SUFFIX = ".export-summary.json"
# "lost": traces still being written when the process ended (counted, never silent).
_SUMMARY_KEYS = ("dropped", "failed", "spooled", "replayed", "written", "lost")


def record_export_summary(spool_dir: Path, stats: dict[str, int], name: str) -> Path:
    """Leave a process's export counts beside its spool (``routetrace stats`` sums them): the
    drop count is otherwise gone with the process that counted it. ``name`` is the process's
    own: a later summary of the same process replaces its earlier one, never adds to it."""
    text = json.dumps({k: int(stats.get(k, 0)) for k in _SUMMARY_KEYS})

    def write(directory: Path) -> Path:
        path = directory / f"{name}{_SUMMARY_SUFFIX}"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return path

    return _write_with_fallback(spool_dir, write, "the export summary")


def export_summaries(spool_dir: Path) -> dict[str, int]:
    """The export counts left by processes that ended with drops, spools or losses, summed."""
    total = dict.fromkeys(("processes", *_SUMMARY_KEYS), 0)
    paths = [p for d in _spool_dirs(spool_dir) if d.is_dir()
             for p in d.glob(f"*{_SUMMARY_SUFFIX}")]
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            counts = {k: int(data.get(k, 0)) for k in _SUMMARY_KEYS}
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        total["processes"] += 1
        for k, v in counts.items():
            total[k] += v
    return total
