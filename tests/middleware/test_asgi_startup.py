"""A broken route table stops the server at start-up, with the error; it never turns the
app's requests into 500s. ``add_middleware`` builds the middleware inside the first ASGI
call (the lifespan's), which is where this matters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi import FastAPI

from routetrace.middleware import TracingMiddleware
from routetrace.routing import ConfigError
from tests.conftest import traces_of
from tests.middleware.conftest import drive, make_scope

APP = """
    from fastapi import FastAPI
    from routetrace.middleware import TracingMiddleware

    app = FastAPI()

    @app.get("/")
    def index():
        return {"ok": True}

    app.add_middleware(TracingMiddleware, config="routetrace.toml")
"""


def _uvicorn(app_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ROUTETRACE_"))}
    env["MLFLOW_TRACKING_URI"] = str(app_dir / "mlruns")
    env["PYTHONPATH"] = os.pathsep.join([str(app_dir), os.getcwd()])
    try:
        return subprocess.run(
            [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"uvicorn kept running with a broken route table:\n{exc.stderr}")


def test_a_broken_table_makes_uvicorn_exit_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "routetrace.toml").write_text('experiment = "web"\n\n[[routes]]\n'
                                              'path = "/chat/**"\nexperimnet = "chat"\n')
    proc = _uvicorn(tmp_path, tmp_path)
    assert proc.returncode != 0
    assert ("routetrace.toml:5: routes[0].experimnet: unknown key 'experimnet'; "
            "did you mean 'experiment'?") in proc.stderr
    assert "Application startup failed" in proc.stderr
    assert "Application startup complete" not in proc.stderr


def test_a_table_missing_from_the_working_directory_names_that_directory(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "service"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(textwrap.dedent(APP))
    (app_dir / "routetrace.toml").write_text('experiment = "web"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _uvicorn(app_dir, elsewhere)
    assert proc.returncode != 0
    assert f"routetrace.toml: no such file in {elsewhere}" in proc.stderr


def test_built_outside_a_server_a_broken_table_raises_at_once() -> None:
    with pytest.raises(ConfigError, match="experimnet"):
        TracingMiddleware(FastAPI(), config={"experimnet": "web"})


@pytest.mark.anyio
async def test_built_inside_a_server_a_broken_table_leaves_requests_untouched() -> None:
    inner = FastAPI()

    @inner.get("/")
    def index() -> dict[str, bool]:
        return {"ok": True}

    inner.add_middleware(TracingMiddleware, config={"experimnet": "web"})
    sent = await drive(inner, make_scope("GET", "/"))
    assert sent.status == 200
    assert sent.body == b'{"ok":true}'
    assert traces_of() == []
