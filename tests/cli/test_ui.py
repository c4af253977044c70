"""``routetrace ui``: what it refuses before it serves anything."""

from __future__ import annotations

import pytest

from tests.cli.conftest import one_line_error, run


def test_ui_refuses_a_public_host_without_allow_remote(capsys):
    code, _, err = run(capsys, "ui", "--host", "0.0.0.0")
    assert code == 2
    line = one_line_error(err)
    assert "--allow-remote" in line
    assert "request data" in line


@pytest.mark.parametrize(("port", "message"), [
    pytest.param("99999", "argument --port: 99999 is not a port: use 0-65535", id="too big"),
    pytest.param("-1", "argument --port: -1 is not a port: use 0-65535", id="negative"),
    pytest.param("http", "argument --port: 'http' is not a port number", id="not a number"),
])
def test_ui_bad_port_is_one_usage_line(capsys, port, message):
    code, out, err = run(capsys, "ui", "--port", port)
    assert code == 2
    assert out == ""
    assert message in one_line_error(err)

