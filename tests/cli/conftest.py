"""What the CLI tests share: running the command in-process, its one-line errors, a filled store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import routetrace
from routetrace.cli import main
from tests.viewer._data import fill_store

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("routetrace: ")
    return lines[0]


@pytest.fixture
def filled(store):
    return fill_store(store)


def trace_count(experiment: str) -> int:
    return len(routetrace.search_traces(experiment, max_results=1000, return_type="list"))


def console_script() -> Path:
    script = Path(sys.executable).parent / "routetrace"
    if not script.exists():
        pytest.skip("the routetrace console script is not installed in this environment")
    return script

