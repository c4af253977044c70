"""Two and four processes serving requests through the middleware into one local store.

The lead's test (tests/backends/test_local.py) has processes write spans directly; here each
process runs the Starlette app behind ``TracingMiddleware`` (route table: two experiments,
created concurrently by name) and serves 300 requests in-process, while this process keeps
reading the store, batch by batch, as the writers' export workers write their rows. Exactly every
request's trace is stored once, in its route's experiment, each experiment exists once, and
SQLite's integrity check passes.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from routetrace.backends.local import LocalStore
from tests.reliability._harness import root_names, stored_request_ids

PER_PROCESS = 300
CHAT_EVERY = 6  # one request in six is a POST /chat/{session}


def _serve(uri: str, worker: int, started) -> None:  # runs in a spawned process
    import asyncio

    import httpx

    import routetrace
    from tests.reliability.server_apps import _starlette

    app = _starlette()

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            started.wait(60)  # all processes start writing together
            for i in range(PER_PROCESS):
                rid = worker * 10_000 + i
                if i % CHAT_EVERY == 0:
                    r = await client.post(f"/chat/{rid}", json={"i": rid})
                    assert r.json() == {"i": rid}
                else:
                    r = await client.get(f"/r/{rid}")
                    assert r.text == str(rid)

    asyncio.run(main())
    assert routetrace.flush(60)
    assert routetrace.get_tracking_uri() == uri


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_serving_into_one_store(tmp_path: Path, processes: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "shared")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the spawned processes' environment
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    procs = [ctx.Process(target=_serve, args=(uri, w, started)) for w in range(processes)]
    for p in procs:
        p.start()
    started.set()
    reads = 0
    while any(p.is_alive() for p in procs):  # read while they write
        stored_request_ids(uri)
        reads += 1
        for p in procs:
            p.join(0.05)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    expected_load = {w * 10_000 + i for w in range(processes) for i in range(PER_PROCESS)
                     if i % CHAT_EVERY}
    stored = stored_request_ids(uri)
    assert set(stored) == expected_load
    assert set(stored.values()) == {1}
    chats = processes * len(range(0, PER_PROCESS, CHAT_EVERY))
    assert root_names(uri, "chat") == {"POST /chat/{session}": chats}
    store = LocalStore.from_uri(uri)
    names = [e.name for e in store.list_experiments()]
    assert sorted(names) == sorted(set(names)) and {"load", "chat"} <= set(names)
    assert len(store.search_traces(max_results=100_000)) == processes * PER_PROCESS
    db = store.db_path
    store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert reads >= 1
