"""Part 2 of ``run_all``: each configuration served by uvicorn (1 worker, loopback) under load.

    .venv/bin/python -m benchmarks.over_http --config routetrace --seconds 10 [--http httptools]

uvicorn parses HTTP with h11 (pure Python) unless ``--http httptools`` (its C parser, what
``uvicorn[standard]`` installs; in the ``dev`` extra). Load: ``wrk`` (mixed GET /hello and
POST /chat/{n}, ``mixed.lua``) when it is on PATH
(``apt-get install -y wrk``), else a bounded Python client (asyncio + raw HTTP/1.1 keep-alive
connections). After a warm-up, ``GET /__bench/final`` (answered by the server process itself,
untraced: the exporter flushed, then every trace brought to its backend's final form, the
local store's deferred build included), then the server's CPU is read from /proc; one timed
run, ``GET /__bench/final`` again and the CPU read again. So the server's CPU per request
counts every trace to its final form, and *final-form requests/s* is the timed requests over
the timed run's seconds plus the seconds the final call took: what the server sustains when
it has to finish every trace, not only answer. The CPU is read once more between the timed
run and the final call, and at each of these three moments every thread of the server too
(/proc/PID/task/TID/stat), so that its CPU splits into the serving thread's (the one running
the event loop: the main thread, TID == PID) and the other threads' (export workers, native
writers), for the timed run and for the final call separately. Then the RSS is read, the
server gets SIGTERM, and, once it has exited by itself, the traces its backend kept are
counted. Configurations that send somewhere send to :mod:`benchmarks.sink`, started here.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _cpu_s(pid: int) -> float:
    """User + system CPU of the process, all its threads (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ThreadCPU(NamedTuple):
    """One thread of the server: its name (``comm``) and its user + system CPU seconds."""

    name: str
    seconds: float


def _threads_cpu(pid: int) -> dict[int, ThreadCPU]:
    """Each live thread's CPU, by thread id (/proc/PID/task/TID/stat, clock ticks)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended since the listing
            continue
        out[int(task.name)] = ThreadCPU(name, (int(fields[11]) + int(fields[12])) / tick)
    return out


class CPURead(NamedTuple):
    """The server's CPU at one moment: the whole process, and each live thread."""

    process: float
    threads: dict[int, ThreadCPU]


def _cpu_read(pid: int) -> CPURead:
    return CPURead(_cpu_s(pid), _threads_cpu(pid))


def _thread_deltas(before: CPURead, after: CPURead) -> dict[int, float]:
    """CPU seconds each thread live at ``after`` spent since ``before`` (a thread born
    between the reads counts from zero; one that ended between them is missing, though the
    process figure still holds its CPU)."""
    out = {}
    for tid, thread in after.threads.items():
        old = before.threads.get(tid)
        out[tid] = thread.seconds - (old.seconds if old else 0.0)
    return out


class CPUSplit(NamedTuple):
    """Server CPU µs per request between two reads: the whole process, the thread running
    the event loop, and every other thread."""

    process: float
    loop: float
    other: float


def _split(pid: int, before: CPURead, after: CPURead, requests: int) -> CPUSplit:
    deltas = _thread_deltas(before, after)
    scale = 1e6 / requests
    loop = deltas.pop(pid, 0.0)
    return CPUSplit((after.process - before.process) * scale, loop * scale,
                    sum(deltas.values()) * scale)


def _final(port: int) -> float:
    """Ask the server to flush and finish every trace; the seconds it took."""
    from benchmarks.peers import FINAL_PATH

    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{FINAL_PATH}", timeout=300) as resp:
        if not json.load(resp)["flushed"]:
            raise RuntimeError("the server's exporter did not flush")
    return time.perf_counter() - started


def _wait_up(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling a server that is starting
    raise RuntimeError("server did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
         str(HERE / "mixed.lua"), url], capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = {"tool": "wrk"}
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    result["requests"] = int(done.group(1))
    result["seconds"] = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    for pct in ("50", "99"):
        result[f"p{pct}_ms"] = _ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out,
                                             re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(errors.group(1)) if errors else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        result["errors"] += sum(int(x) for x in sock.groups())
    return result


def run_python_client(port: int, seconds: float, connections: int) -> dict[str, Any]:
    """A bounded keep-alive HTTP/1.1 client: ``connections`` sockets, one request in flight
    each, for ``seconds``."""
    body = b'{"message": "hello there", "n": 1}'
    latencies: list[float] = []
    errors = 0

    async def worker(k: int, deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = k
        while time.perf_counter() < deadline:
            n += 1
            if n % 2:
                req = b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n"
            else:
                req = (b"POST /chat/%d HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                       b"\r\ncontent-length: %d\r\n\r\n%s" % (n % 100, len(body), body))
            start = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
        writer.close()

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(k, start + seconds) for k in range(connections)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    return {"tool": "python", "requests": len(latencies), "rps": len(latencies) / elapsed,
            "seconds": elapsed,
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3, "errors": errors}


def run(config: str, seconds: float, connections: int, workdir: Path,
        http: str = "h11") -> dict[str, Any]:
    from benchmarks import sink
    from benchmarks.peers import SINK_CONFIGS, count_kept, environment

    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "ROUTETRACE_", "OTEL_", "DD_", "SENTRY_"))}
    running = sink.start(workdir) if config in SINK_CONFIGS else None
    env.update(environment(config, workdir, running and running.port))
    env["PYTHONPATH"] = str(REPO)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.peers:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log",
         "--http", http],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_up(port, proc)
        load = run_wrk if shutil.which("wrk") else None
        url = f"http://127.0.0.1:{port}"
        warm_s = max(1, min(2, int(seconds // 4)))  # wrk takes whole seconds
        if load:
            warm = run_wrk(url, warm_s, connections)
            _final(port)
            cpu0 = _cpu_read(proc.pid)
            result = run_wrk(url, seconds, connections)
        else:
            warm = run_python_client(port, warm_s, connections)
            _final(port)
            cpu0 = _cpu_read(proc.pid)
            result = run_python_client(port, seconds, connections)
        cpu1 = _cpu_read(proc.pid)
        result["final_s"] = _final(port)
        cpu2 = _cpu_read(proc.pid)
        n = result["requests"]
        result["server_cpu_us"] = (cpu2.process - cpu0.process) / n * 1e6
        for phase, (before, after) in (("run", (cpu0, cpu1)), ("final", (cpu1, cpu2))):
            split = _split(proc.pid, before, after, n)
            result[f"server_cpu_{phase}_us"] = split.process
            result[f"loop_cpu_{phase}_us"] = split.loop
            result[f"other_cpu_{phase}_us"] = split.other
        # Each thread's share, named, to tell an export worker from a native writer.
        result["server_threads_us"] = {
            f"{cpu2.threads[tid].name} ({tid})": seconds / n * 1e6
            for tid, seconds in _thread_deltas(cpu0, cpu2).items()}
        result["clock_tick_s"] = 1 / os.sysconf("SC_CLK_TCK")
        result["final_rps"] = result["requests"] / (result["seconds"] + result["final_s"])
        result.update({f"server_{k}": v for k, v in _rss_mib(proc.pid).items()})
        result["warmup_requests"] = warm["requests"]
        proc.send_signal(signal.SIGTERM)
        stopped = time.perf_counter()
        result["exit_code"] = proc.wait(120)
        result["shutdown_s"] = time.perf_counter() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        try:
            result_kept = count_kept(config, workdir)  # after the server is gone
        finally:
            if running is not None:
                running.stop()
    result["config"] = config
    result["http_parser"] = http
    result["kept"] = result_kept
    result["sent"] = result["requests"] + result["warmup_requests"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11",
                        help="uvicorn's HTTP parser")
    args = parser.parse_args()
    workdir = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="bench-http-"))
    print(json.dumps(run(args.config, args.seconds, args.connections, workdir, args.http)))


if __name__ == "__main__":
    main()
