"""Shared pieces of the reliability suite: real server processes, a bounded load generator,
and reading back which requests have a trace."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from routetrace.backends.local import LocalStore
from tests.fixtures.servers import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A server started as a subprocess of the test, in its own process group."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"server did not exit within {timeout}s:\n{self.output()}"
                                 ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_server(args: list[str], store: str, tmp: Path, **env: str) -> Server:
    """Start ``python -m <args...>`` serving on a free loopback port (``{port}`` in args)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_"))}
    full_env.update({"MLFLOW_TRACKING_URI": store, "ROUTETRACE_SIGNAL_HANDLERS": "true",
                     "PYTHONPATH": str(REPO), **env})
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *(a.format(port=port) for a in args)],
                                cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Server(proc, port, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            return httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, 60, what="server start")
    except BaseException:
        server.kill()
        raise
    return server


@dataclass
class LoadResult:
    completed: set[int] = field(default_factory=set)  # a full, correct response came back
    failed: dict[int, str] = field(default_factory=dict)  # no (complete) response


def run_load(url: str, n: int, *, concurrency: int, at: int | None = None,
             action: Callable[[], None] | None = None, first: int = 0) -> LoadResult:
    """GET ``/r/{i}`` for i in range(first, first + n) with at most ``concurrency`` in
    flight; after ``at``
    responses have completed, call ``action`` once (e.g. SIGTERM the server) while the rest
    of the requests are still being sent."""
    result = LoadResult()

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        fired = False
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            async def one(i: int) -> None:
                nonlocal fired
                async with sem:
                    try:
                        r = await client.get(f"/r/{i}")
                    except httpx.HTTPError as exc:
                        result.failed[i] = type(exc).__name__
                        return
                if r.status_code == 200 and r.text == str(i):
                    result.completed.add(i)
                else:
                    result.failed[i] = f"HTTP {r.status_code}"
                if action is not None and not fired and len(result.completed) >= (at or 0):
                    fired = True
                    action()

            await asyncio.gather(*(one(i) for i in range(first, first + n)))

    asyncio.run(main())
    return result


def stored_request_ids(store: str, experiment: str = "load") -> Counter[int]:
    """How many traces of each ``/r/{i}`` request the store holds (read in this process)."""
    backend = LocalStore.from_uri(store)
    try:
        ids = [e.experiment_id for e in backend.list_experiments() if e.name == experiment]
        if not ids:
            return Counter()
        traces = backend.search_traces(experiment_ids=ids, max_results=1_000_000)
        return Counter(int(t.root_span.inputs["path"].rsplit("/", 1)[1]) for t in traces)
    finally:
        backend.close()


def root_names(store: str, experiment: str) -> Counter[str]:
    backend = LocalStore.from_uri(store)
    try:
        ids = [e.experiment_id for e in backend.list_experiments() if e.name == experiment]
        if not ids:
            return Counter()
        traces = backend.search_traces(experiment_ids=ids, max_results=1_000_000)
        return Counter(t.root_span.name for t in traces)
    finally:
        backend.close()
