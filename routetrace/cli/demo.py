"""``routetrace demo``: run the example app under uvicorn, send it requests, summarise the
traces they left."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from routetrace.cli.common import PROG, CliError, count_traces, echo, echo_error, tracer_from
from routetrace.cli.render import safe, tabulate


def _examples_dir() -> Path:
    import routetrace

    return Path(routetrace.__file__).resolve().parent.parent / "examples"


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_requests(client: Any) -> list[tuple[str, str]]:
    """The mix the demo sends; returns (request, outcome) pairs for the report."""
    import httpx

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/math/add", {"json": {"a": 2, "b": 3}}),
        ("POST", "/math/mul", {"json": {"a": 6, "b": 7}}),
        ("POST", "/math/div", {"json": {"a": 1, "b": 0}}),
        ("POST", "/math/sub", {"json": {"a": 10, "b": 4}}),
        ("POST", "/chat/demo", {"json": {"message": "Tell me about tracing."}}),
        ("POST", "/chat/demo", {"json": {"message": "And about routes?"}}),
        ("GET", "/slow", {}),
        ("GET", "/error", {}),
        ("GET", "/healthz", {}),
    ]
    outcomes = []
    for method, path, kwargs in calls:
        label = f"{method} {path}"
        for attempt in (1, 2):  # the server closes the connection after a 500: retry once
            try:
                with client.stream(method, path, **kwargs) as response:
                    chunks = sum(1 for _ in response.iter_raw())
                extra = f", {chunks} chunks" if chunks > 1 else ""
                outcomes.append((label, f"{response.status_code}{extra}"))
                break
            except httpx.TransportError as exc:
                if attempt == 2:
                    outcomes.append((label, f"failed: {type(exc).__name__}"))
    return outcomes


def cmd_demo(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    import tempfile

    try:
        import httpx
        import uvicorn  # noqa: F401  (the server runs it; fail here with the fix)
    except ImportError as exc:
        raise CliError(f"the demo needs httpx, uvicorn and FastAPI ({exc.name} is missing): "
                       "pip install 'routetrace[demo]'") from None
    examples = Path(args.examples) if args.examples else _examples_dir()
    app_file = examples / "fastapi_app.py"
    config = examples / "routetrace.toml"
    if not app_file.is_file() or not config.is_file():
        raise CliError(f"the demo runs the example app of a source checkout; "
                       f"{app_file} or {config} is missing (--examples DIR points elsewhere)")
    store = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"
    if "://" not in store and not store.startswith(("file:", "sqlite:")):
        store = str(Path(store).expanduser().absolute())
    start_ms = int(time.time() * 1000)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "ROUTETRACE_CONFIG": str(config),
        "ROUTETRACE_SIGNAL_HANDLERS": "true",  # SIGTERM flushes
        "MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS": "0.25",
        "PYTHONUNBUFFERED": "1",
    }
    echo(f"Starting the example app (examples/fastapi_app.py) on http://127.0.0.1:{port}, "
         f"traces to {store}")
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in the finally below)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--app-dir", str(examples), "--log-level", "warning",
         "--no-access-log"],
        cwd=str(examples), env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def server_log() -> str:
        log.seek(0)
        lines = [line.rstrip() for line in log.read().splitlines() if line.strip()]
        return " | ".join(lines[-3:]) or "(no output)"

    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=httpx.Timeout(60.0, connect=2.0),
                          trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise CliError(f"the example app exited with {server.returncode}: "
                                   f"{server_log()}")
                try:
                    client.get("/healthz", timeout=1.0)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise CliError("the example app did not start within 60 s: "
                                       f"{server_log()}") from None
                    time.sleep(0.1)  # polling a subprocess for readiness
            outcomes = _demo_requests(client)
        echo("Requests sent:")
        for label, outcome in outcomes:
            echo(f"  {label:<18} {outcome}")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # uvicorn shuts down; routetrace flushes
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        code = server.returncode
        log_text = server_log()
        log.close()
    if code not in (0, -signal.SIGTERM):
        echo_error(f"the example app exited with {code}: {log_text}")
    return _demo_summary(args, store, start_ms)


def _demo_summary(args: argparse.Namespace, store: str, start_ms: int) -> int:
    from routetrace.backends import backend_for_uri

    backend = backend_for_uri(store, tracer_from(args).settings)
    since = f"trace.timestamp_ms >= {start_ms}"
    rows = []
    total = 0
    for exp in backend.list_experiments():
        n = count_traces(backend, exp.experiment_id, since, 10_000)
        if not n:
            continue
        errors = count_traces(backend, exp.experiment_id, f"{since} AND trace.status = 'ERROR'",
                              10_000)
        total += n
        rows.append([safe(exp.name), str(n), str(errors)])
    echo("")
    if not rows:
        raise CliError(f"the demo wrote no traces to {store}; is the middleware installed "
                       "in examples/fastapi_app.py?")
    echo(f"Traces written by this run ({total}):")
    for line in tabulate(["experiment", "traces", "errors"], rows, flex=(0,), right=(1, 2)):
        echo("  " + line)
    default = Path("./mlruns").absolute()
    uri_flag = "" if Path(store) == default else f" --tracking-uri {store}"
    command = _self_command()
    echo("")
    echo(f"Look at them:  {command}{uri_flag} ui      (then open http://127.0.0.1:5050)")
    echo(f"           or: {command}{uri_flag} traces list")
    return 0


def _self_command() -> str:
    """How the user can run this same command line again from here.

    After ``make demo`` the console script sits in ``.venv/bin``, which is not on PATH: print
    its path then, and the bare name only when PATH finds this very script.
    """
    script = Path(sys.executable).parent / PROG
    if not script.is_file():
        return f"{sys.executable} -m routetrace.cli"
    found = shutil.which(PROG)
    if found and Path(found).resolve() == script.resolve():
        return PROG
    try:
        return str(script.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(script)

