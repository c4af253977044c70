"""Usage errors, and the installed console script."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cli.conftest import console_script, one_line_error, run


@pytest.mark.parametrize("argv", [["traces", "frob"], [], ["traces", "list", "--limit", "x"],
                                  ["traces", "delete"]])
def test_usage_errors_are_one_line_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    one_line_error(err)


def test_console_script_reports_a_bad_variable_in_one_line(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path),
           "MLFLOW_TRACE_TIMEOUT_SECONDS": "abc"}
    proc = subprocess.run([str(console_script()), "traces", "list"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("routetrace: bad environment: "
                                   "MLFLOW_TRACE_TIMEOUT_SECONDS='abc' is not a number")


def test_console_script_lists(tmp_path, filled, store):
    env = {**os.environ, "MLFLOW_TRACKING_URI": str(store.uri), "COLUMNS": "120"}
    proc = subprocess.run([str(console_script()), "traces", "list", "-e", "chat-agent"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "POST /chat/{id}" in proc.stdout

