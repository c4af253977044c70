"""``routetrace experiments``."""

from __future__ import annotations

import json

from tests.cli.conftest import run


def test_experiments_list(capsys, filled):
    code, out, _ = run(capsys, "experiments", "list")
    assert code == 0
    rows = {line.split()[1]: line.split()[2:4] for line in out.splitlines()[1:]}
    assert rows["math-agent"] == ["7", "0"]
    assert rows["chat-agent"] == ["1", "1"]
    code, out, _ = run(capsys, "experiments", "list", "--json")
    assert {e["name"] for e in json.loads(out)} >= {"math-agent", "chat-agent"}


def test_experiments_alone_lists_them(capsys, filled):
    code, out, err = run(capsys, "experiments")
    assert code == 0, err
    assert out == run(capsys, "experiments", "list")[1]
    assert "math-agent" in out

