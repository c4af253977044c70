"""The Makefile's install levels, read from `make -n` (what it would run) in a scratch copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    os.utime(tmp_path / "pyproject.toml", (1_000_000_000, 1_000_000_000))  # older than stamps
    return tmp_path


def plan(checkout: Path, target: str) -> str:
    # Under `make test` the suite runs inside make: without its variables the nested make
    # neither prints "Entering directory" lines nor inherits the outer make's flags.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=checkout,
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def installed(checkout: Path, *levels: str) -> None:
    """As if ``make`` had installed these levels into .venv."""
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python").touch()
    total = subprocess.run("cat pyproject.toml | cksum", shell=True, cwd=checkout,
                           capture_output=True, text=True, check=True).stdout.split()[0]
    for level in levels:
        (checkout / ".venv" / f".installed-{level}-{total}").touch()


def test_a_fresh_demo_installs_only_the_demo_extra(checkout):
    steps = plan(checkout, "demo")
    assert "-m venv .venv" in steps
    assert "pip install --quiet -e '.[demo]'" in steps
    assert "[dev]" not in steps
    assert steps.rstrip().endswith(".venv/bin/routetrace demo")


def test_test_installs_the_dev_set_on_top_of_the_demo_venv(checkout):
    installed(checkout, "demo")
    assert "pip install" not in plan(checkout, "demo")
    steps = plan(checkout, "test")
    assert "-m venv" not in steps
    assert "pip install --quiet -e '.[dev]'" in steps
    assert ".venv/bin/python -m pytest" in steps


def test_after_the_dev_install_neither_target_installs_again(checkout):
    installed(checkout, "demo", "dev")
    assert "pip install" not in plan(checkout, "demo")
    assert "pip install" not in plan(checkout, "test")
    assert "pip install" not in plan(checkout, "ui")


def test_an_edited_pyproject_reinstalls_each_level(checkout):
    installed(checkout, "demo", "dev")
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("\n# edited\n")
    assert "pip install --quiet -e '.[demo]'" in plan(checkout, "demo")
    assert "pip install --quiet -e '.[dev]'" in plan(checkout, "test")


def test_the_demo_extra_is_lean_and_part_of_the_test_set():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(d.startswith("routetrace[") and "demo" in d for d in extras["test"])
    names = {d.split(">")[0].split("[")[0] for d in extras["demo"]}
    assert names == {"routetrace", "httpx", "fastapi"}
