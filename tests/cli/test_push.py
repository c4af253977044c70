"""``routetrace push`` between two local stores."""

from __future__ import annotations

import json

from tests.cli.conftest import run


def test_push_between_local_stores(capsys, filled, store, tmp_path):
    target = tmp_path / "other"
    code, out, err = run(capsys, "push", "--from", str(store.uri), "--to", str(target),
                         "--experiment", "math-agent")
    assert code == 0, err
    assert "Pushed 7 trace(s)" in out
    code, out, _ = run(capsys, "--tracking-uri", str(target), "traces", "list", "--json")
    assert len(json.loads(out)) == 7

