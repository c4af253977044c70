"""OTLP-JSON lines in a file, for log shippers (Vector, Fluent Bit, the collector's filelog).

``file:///var/log/app/traces.jsonl?max_bytes=104857600&keep=5``: one line per trace, each an
``ExportTraceServiceRequest`` in OTLP-JSON (the collector's ``file`` exporter format, so its
``otlpjsonfile`` receiver reads it back). Before a write would take the file past
``max_bytes`` (default 100 MB) it is rotated: ``traces.jsonl`` → ``traces.jsonl.1`` → ... up to
``keep`` old files (default 5); older ones are deleted.

Writes go through aiofiles. The export workers are threads, not coroutines, so each worker
thread runs the append on its own private event loop (created once per thread, never the
application's loop). ``max_concurrency`` is 1: one writer keeps lines whole and rotation
race-free. The file is append-only, so a replayed batch appears twice; readers deduplicate by
(traceId, spanId) like any OTLP consumer.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from routetrace.backends import otlp_encoding as enc
from routetrace.backends.base import (
    Backend,
    BackendError,
    ExperimentInfo,
    LabelledExperiments,
    records_of,
)
from routetrace.core.build import TraceRecord
from routetrace.core.model import Trace
from routetrace.core.serialize import encoder

if TYPE_CHECKING:
    from routetrace.core.settings import Settings

__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_BYTES", "JsonlFileBackend"]

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_KEEP = 5
# One encoder for every line, built once.
_line = encoder(separators=(",", ":"), default=str)


def _import_aiofiles() -> Any:
    try:
        import aiofiles
    except ImportError:
        raise ImportError(
            "file:///...jsonl tracking URIs need aiofiles: pip install 'routetrace[file]'"
        ) from None
    return aiofiles


class JsonlFileBackend(LabelledExperiments, Backend):
    max_concurrency = 1

    def __init__(self, path: str | os.PathLike[str], settings: Settings | None = None, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP,
                 uri: str | None = None) -> None:
        self._aiofiles = _import_aiofiles()
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive number of bytes, not {max_bytes}")
        if keep < 0:
            raise ValueError(f"keep must be 0 or more old files, not {keep}")
        self.path = Path(path).expanduser().absolute()
        self.uri = uri or self.path.as_uri()
        self.max_bytes = max_bytes
        self.keep = keep
        self.spool_dir = (Path(settings.spool_dir) if settings and settings.spool_dir
                          else self.path.parent / f".{self.path.name}.spool")
        self.service_name = (settings.service_name if settings else None) or "routetrace"
        self._experiments: dict[str, ExperimentInfo] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str, settings: Settings | None = None) -> JsonlFileBackend:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"tracking URI {uri!r}: file: URIs must point at this machine")
        query = parse_qs(parts.query)
        unknown = set(query) - {"max_bytes", "keep"}
        if unknown:
            raise ValueError(f"tracking URI {uri!r}: unknown option {sorted(unknown)[0]!r}; "
                             "use ?max_bytes=<bytes>&keep=<files>")

        def number(key: str, default: int) -> int:
            if key not in query:
                return default
            raw = query[key][-1]
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"tracking URI {uri!r}: {key}={raw!r} is not an integer") from None

        return cls(unquote(parts.path), settings, max_bytes=number("max_bytes", DEFAULT_MAX_BYTES),
                   keep=number("keep", DEFAULT_KEEP), uri=uri)

    def encode_lines(self, experiment: ExperimentInfo,
                     records: list[TraceRecord] | list[Trace]) -> bytes:
        """One OTLP-JSON line per trace, from the worker's records as they are."""
        resource = {
            "service.name": self.service_name,
            enc.RESOURCE_EXPERIMENT_ID: experiment.experiment_id,
            enc.RESOURCE_EXPERIMENT_NAME: experiment.name,
        }
        lines = [_line(enc.encode_json([r], resource=resource, style="json"))
                 for r in records_of(records)]
        return ("\n".join(lines) + "\n").encode("utf-8")

    def write_records(self, experiment: ExperimentInfo,
                      records: list[TraceRecord] | list[Trace]) -> None:
        self.write_traces(experiment, records)  # type: ignore[arg-type]

    def write_traces(self, experiment: ExperimentInfo, traces: list[Trace]) -> None:
        if not traces:
            return
        data = self.encode_lines(experiment, traces)
        with self._lock:
            try:
                self._loop().run_until_complete(self._append(data))
            except OSError as exc:
                raise BackendError(f"cannot append to {self.path}: {exc}",
                                   retryable=True) from exc

    def _loop(self) -> asyncio.AbstractEventLoop:
        """This thread's private loop: never the application's, never shared across threads."""
        loop = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
        return loop

    async def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        async with self._aiofiles.open(self.path, "ab") as fh:
            await fh.write(data)
            await fh.flush()

    def _rotate(self) -> None:
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        oldest.unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def stats(self) -> dict[str, Any]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        return {"backend": "file", "path": str(self.path), "bytes": size,
                "max_bytes": self.max_bytes, "keep": self.keep}

    def close(self) -> None:
        loop = getattr(self._local, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.close()
