"""Exit, SIGTERM and fork, in real child processes with real signals."""

from __future__ import annotations

import importlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from routetrace.backends.local import LocalStore

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, store: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": str(store),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=full_env, capture_output=True,
        text=True, timeout=120, check=False,
    )


def _names(store: Path) -> list[str]:
    traces = LocalStore.from_uri(str(store)).search_traces(max_results=100_000)
    return sorted(t.root_span.name for t in traces)


SLOW_STORE = """
import time
from routetrace.backends.local import LocalStore
_orig = LocalStore.write_traces
def slow(self, experiment, traces):
    time.sleep(0.002)  # a slower disk: the queue is never empty when the process stops
    _orig(self, experiment, traces)
LocalStore.write_traces = slow
"""


def test_exit_flushes_the_queue_and_exports_open_spans_with_error(tmp_path):
    store = tmp_path / "store"
    proc = _run(SLOW_STORE + """
import threading, routetrace
for i in range(500):
    with routetrace.start_span(f"t{i}"):
        pass
span = routetrace._get_tracer().start_span("unfinished", parent=None)
print(routetrace.get_export_stats()["written"] < 500)
""", store)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"  # the queue was not drained when the script ended
    assert _names(store) == sorted([f"t{i}" for i in range(500)] + ["unfinished"])
    trace = next(t for t in LocalStore.from_uri(str(store)).search_traces(max_results=1000)
                 if t.root_span.name == "unfinished")
    assert trace.info.state == "ERROR"
    assert trace.root_span.events[0].name == "exit"


def test_sigterm_with_default_disposition_flushes_then_dies_by_sigterm(tmp_path):
    store = tmp_path / "store"
    proc = _run(SLOW_STORE + """
import os, signal, routetrace
for i in range(300):
    with routetrace.start_span(f"t{i}"):
        pass
os.kill(os.getpid(), signal.SIGTERM)
import time; time.sleep(30)
print("not reached")
""", store)
    assert proc.returncode == -signal.SIGTERM  # died as it would have without routetrace
    assert "not reached" not in proc.stdout
    assert _names(store) == sorted(f"t{i}" for i in range(300))


def test_sigterm_chains_to_the_handler_installed_before(tmp_path):
    store = tmp_path / "store"
    proc = _run(SLOW_STORE + """
import signal, sys, routetrace
def app_handler(signum, frame):
    print("app handler ran")
    sys.exit(3)
signal.signal(signal.SIGTERM, app_handler)
for i in range(300):
    with routetrace.start_span(f"t{i}"):
        pass
assert signal.getsignal(signal.SIGTERM) is not app_handler  # routetrace wrapped it
signal.raise_signal(signal.SIGTERM)
""", store, ROUTETRACE_SIGNAL_HANDLERS="true")
    assert proc.stdout.strip() == "app handler ran"
    assert proc.returncode == 3  # the app decided how to exit
    assert _names(store) == sorted(f"t{i}" for i in range(300))


def test_signal_handlers_can_be_left_alone(tmp_path):
    proc = _run("""
import signal, routetrace
with routetrace.start_span("x"):
    pass
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
""", tmp_path / "store", ROUTETRACE_SIGNAL_HANDLERS="false")
    assert proc.stdout.strip() == "True", proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_fresh_workers_and_nothing_twice(tmp_path):
    store = tmp_path / "store"
    proc = _run(SLOW_STORE + """
import os, routetrace
for i in range(200):
    with routetrace.start_span(f"parent-before-{i}"):
        pass
pid = os.fork()
if pid == 0:
    for i in range(100):
        with routetrace.start_span(f"child-{i}"):
            pass
    os._exit(0 if routetrace.flush(30) else 1)
for i in range(50):
    with routetrace.start_span(f"parent-after-{i}"):
        pass
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
""", store)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    names = _names(store)
    assert len(names) == len(set(names)) == 350
    assert names == sorted(
        [f"parent-before-{i}" for i in range(200)] + [f"child-{i}" for i in range(100)]
        + [f"parent-after-{i}" for i in range(50)]
    )


def test_multiprocessing_fork_children_flush_at_exit(tmp_path):
    store = tmp_path / "store"
    proc = _run(SLOW_STORE + """
import multiprocessing, routetrace

def work(k):
    for i in range(100):
        with routetrace.start_span(f"w{k}-{i}"):
            pass
    # no flush: the child leaves through os._exit; routetrace's exit hook must run anyway

if __name__ == "__main__":
    with routetrace.start_span("parent"):
        pass
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(k,)) for k in range(2)]
    for p in procs: p.start()
    for p in procs: p.join(60)
    print([p.exitcode for p in procs])
""", store)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0]"
    assert _names(store) == sorted(
        ["parent"] + [f"w{k}-{i}" for k in range(2) for i in range(100)]
    )
    conn = sqlite3.connect(LocalStore.from_uri(str(store)).db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize(("module", "name"), [
    ("routetrace.core.live_trace", "_children_lock"),
    ("routetrace.core.tracer", "_tracer_lock"),
    ("routetrace.backends", "_lock"),
])
def test_a_lock_another_thread_holds_at_fork_is_free_in_the_child(module: str, name: str
                                                                   ) -> None:
    mod = importlib.import_module(module)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with getattr(mod, name):
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: one thread, and a copy of a lock nobody will release
        os._exit(0 if getattr(mod, name).acquire(timeout=2) else 1)
    done.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_a_store_call_in_progress_even_before_the_first_trace(tracer):
    """gunicorn --preload forks after import: a store the app opened at import (a search, a
    set_experiment) must already be quiesced around the fork, or the child inherits SQLite in
    the middle of a call."""
    store = tracer.backend  # opened, no trace started: no exit hook installed yet
    inside, released = threading.Event(), threading.Event()

    def long_store_call() -> None:
        with store._sqlite_lock:
            inside.set()
            released.wait(1.0)  # the call in progress; the fork must wait for it to end
            released.set()

    worker = threading.Thread(target=long_store_call)
    worker.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    ended_before_fork = released.is_set()
    worker.join()
    os.waitpid(pid, 0)
    assert ended_before_fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_hooks_registered_with_on_fork_run_around_every_fork(tmp_path):
    from routetrace.export import lifecycle

    seen: list[str] = []
    marker = tmp_path / "child"
    lifecycle.on_fork(before=lambda: seen.append("before"),
                      after_in_parent=lambda: seen.append("parent"),
                      after_in_child=lambda: marker.write_text("child"))
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        lifecycle._fork_hooks.pop()
    assert seen == ["before", "parent"]
    assert marker.read_text() == "child"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_children_forked_after_import_and_before_any_trace_do_not_repeat_ids(tmp_path):
    store = tmp_path / "store"
    proc = _run("""
import os, routetrace
children = []
for k in range(3):
    pid = os.fork()
    if pid == 0:
        with routetrace.start_span(f"c{k}"):
            pass
        routetrace.flush()
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
""", store)
    assert proc.returncode == 0, proc.stderr
    traces = LocalStore.from_uri(str(store)).search_traces(max_results=100)
    assert sorted(t.root_span.name for t in traces) == ["c0", "c1", "c2"]
    assert len({t.info.trace_id for t in traces}) == 3
    assert len({t.root_span.span_id for t in traces}) == 3
