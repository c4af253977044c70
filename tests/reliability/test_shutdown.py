"""Shutdown when the backend cannot take the traces, under real uvicorn and gunicorn processes.

Every case ends in the same place whatever the server: each completed request's trace is
written, spooled, or counted (dropped, failed, lost) in a summary the process leaves beside
the spool, and ``routetrace stats`` (another process, after the server is gone, with the
backend still down) shows the spool and those counts. uvicorn matters most: it re-raises
SIGTERM with the default handler after the lifespan shutdown, so no exit hook runs there.

The read-only and full-store cases mount a tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from routetrace.backends.local import LocalStore
from routetrace.export import spool
from tests.fixtures.servers import free_port, wait_until
from tests.reliability._harness import Server, run_load, start_server, stored_request_ids

N = 100
SERVERS = [
    pytest.param("uvicorn", id="uvicorn"),
    pytest.param("gunicorn", id="gunicorn with UvicornWorker"),
]


def _serve(server: str, store: str, tmp: Path, **env: str) -> Server:
    app = "tests.reliability.server_apps:starlette_app"
    if server == "uvicorn":
        args = ["uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
                "--log-level", "warning"]
    else:
        worker = ("uvicorn.workers.UvicornWorker" if importlib.util.find_spec("uvicorn.workers")
                  else "uvicorn_worker.UvicornWorker")
        args = ["gunicorn", "-w", "1", "-k", worker, "-b", "127.0.0.1:{port}",
                "--graceful-timeout", "20", "--log-level", "warning", app]
    env.setdefault("ROUTETRACE_SHUTDOWN_GRACE_SECONDS", "1")
    return start_server(args, store, tmp, **env)


def _load_then_sigterm(server: Server, n: int = N, first: int = 0) -> set[int]:
    try:
        load = run_load(server.url, n, concurrency=8, first=first)
        assert load.failed == {}, load.failed
        server.proc.send_signal(signal.SIGTERM)
        server.wait_exit(60)
    finally:
        server.kill()
    return load.completed


def _spooled_request_ids(spool_dir: Path) -> Counter[int]:
    ids: Counter[int] = Counter()
    for path in spool.spooled_files(spool_dir):
        _, traces = spool.read_spool_file(path)
        ids.update(int(t.root_span.inputs["path"].rsplit("/", 1)[1]) for t in traces)
    return ids


def _stats(store: str, **env: str) -> dict:
    """``routetrace stats --json`` in a fresh process (the server is gone)."""
    cli = Path(sys.executable).parent / "routetrace"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROUTETRACE_"))}
    full.update({"MLFLOW_TRACKING_URI": store, **env})
    out = subprocess.run([str(cli), "stats", "--json"], env=full, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (remount it ``ro`` or let it fill up); its spool fallback is removed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(spool.fallback_dir(mnt / "spool"), ignore_errors=True)


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_with_the_mlflow_server_down_spools_every_completed_request(
        tmp_path: Path, server: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spool_dir = tmp_path / "spool"
    proc = _serve(server, down, tmp_path, ROUTETRACE_SPOOL_DIR=str(spool_dir))
    completed = _load_then_sigterm(proc)
    assert len(completed) == N
    assert _spooled_request_ids(spool_dir) == Counter(completed), proc.output()
    assert "spooled" in proc.output()  # the log says where they went
    stats = _stats(down, ROUTETRACE_SPOOL_DIR=str(spool_dir))
    assert "cannot reach the MLflow server" in stats["store"]["error"]
    assert stats["spool"]["traces"] == N
    export = stats["export"]
    assert (export["spooled"], export["written"], export["dropped"], export["lost"]) == (N, 0, 0, 0)


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_with_a_read_only_store_spools_to_the_fallback_and_says_where(
        tmpfs: Path, tmp_path: Path, server: str) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    store = str(tmpfs)  # its spool, <store>/spool, is read-only too
    proc = _serve(server, store, tmp_path)
    completed = _load_then_sigterm(proc)
    fallback = spool.fallback_dir(tmpfs / "spool")
    assert _spooled_request_ids(tmpfs / "spool") == Counter(completed), proc.output()
    assert str(fallback) in proc.output()
    stats = _stats(store)
    assert stats["spool"]["traces"] == len(completed)
    assert stats["export"]["spooled"] == len(completed)
    assert stats["export"]["written"] == 0


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_with_a_full_store_counts_every_trace_written_spooled_or_lost(
        tmpfs: Path, tmp_path: Path, server: str) -> None:
    store = str(tmpfs)
    proc = _serve(server, store, tmp_path)
    try:
        first = run_load(proc.url, 100, concurrency=8)
        assert first.failed == {}
        wait_until(lambda: sum(stored_request_ids(store).values()) == 100, 30,
                   what="the first 100 traces stored")
        with open(tmpfs / "filler", "wb", buffering=0) as fh:  # the disk is full from here on
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError:
                pass
        completed = first.completed | _load_then_sigterm(proc, 200, first=100)
    finally:
        proc.kill()
    subprocess.run(["mount", "-o", "remount,size=16m", str(tmpfs)], check=True)  # to read it
    written = stored_request_ids(store)
    spooled = _spooled_request_ids(tmpfs / "spool")
    stats = _stats(store)["export"]
    assert stats["written"] == sum(written.values())
    assert stats["spooled"] == sum(spooled.values())
    assert stats["written"] + stats["spooled"] + stats["failed"] + stats["lost"] == len(completed)
    assert set(written) | set(spooled) <= completed
    assert stats["spooled"] + stats["failed"] > 0, "the disk never filled up"
    print(f"\nfull store: {len(completed)} completed, {stats}")


@pytest.mark.parametrize("server", SERVERS)
def test_queue_overflow_under_a_slow_store_is_counted_after_the_process_is_gone(
        tmp_path: Path, server: str) -> None:
    store = str(tmp_path / "store")
    proc = _serve(server, store, tmp_path, MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE="10",
                  MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS="1")
    try:
        first = run_load(proc.url, 1, concurrency=1)
        wait_until(lambda: stored_request_ids(store) == Counter({0: 1}), 30,
                   what="the first trace stored")
        # The store stays locked while the next requests come: the worker waits inside its
        # write (SQLite's busy timeout), the queue fills, the rest are dropped and counted.
        lock = sqlite3.connect(LocalStore.from_uri(store).db_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            rest = run_load(proc.url, N - 1, concurrency=4)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert rest.failed == {} and len(first.completed) == 1
        proc.proc.send_signal(signal.SIGTERM)
        proc.wait_exit(60)
    finally:
        proc.kill()
    written = sum(stored_request_ids(store).values())
    export = _stats(store)["export"]
    assert export["dropped"] > 0, proc.output()
    assert export["written"] == written
    assert export["written"] + export["spooled"] + export["dropped"] + export["failed"] \
        + export["lost"] == N
    print(f"\nqueue of 10, {server}: {export}")
