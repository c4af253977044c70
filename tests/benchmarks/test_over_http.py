"""``benchmarks.over_http``: the server's CPU read per thread from /proc, split into the
event loop's thread and the others."""

from __future__ import annotations

import os
import threading
import time

from benchmarks.over_http import _cpu_read, _split

BURN_S = 0.2


def test_a_thread_born_between_two_reads_is_counted_from_zero_among_the_other_threads(
) -> None:
    pid = os.getpid()  # pytest's main thread stands for the event loop's
    before = _cpu_read(pid)
    burnt, release = threading.Event(), threading.Event()

    def worker() -> None:
        while time.thread_time() < BURN_S:
            pass
        burnt.set()
        release.wait(60)

    thread = threading.Thread(target=worker, name="bench-burner")
    thread.start()
    try:
        assert burnt.wait(60)
        after = _cpu_read(pid)
    finally:
        release.set()
        thread.join()
    assert thread.native_id in after.threads and thread.native_id not in before.threads
    split = _split(pid, before, after, requests=1)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    # The burner's whole CPU is among the other threads (it had none at the first read)...
    assert split.other >= BURN_S * 1e6 - tick_us
    # ...and the three figures agree within a tick per thread and read.
    assert abs(split.loop + split.other - split.process) <= (2 * len(after.threads) + 2) * tick_us
