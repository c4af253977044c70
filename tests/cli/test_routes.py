"""``routetrace routes``."""

from __future__ import annotations

from tests.cli.conftest import one_line_error, run


def test_routes_describe_and_explain(capsys, tmp_path):
    config = tmp_path / "routetrace.toml"
    config.write_text('experiment = "web"\nexclude = ["/healthz"]\n\n[[routes]]\n'
                      'path = "/math/{op}"\nmethods = ["POST"]\nexperiment = "math-agent"\n')
    code, out, _ = run(capsys, "routes", "--config", str(config))
    assert code == 0
    assert "/math/{op}" in out
    assert "math-agent" in out
    code, out, _ = run(capsys, "routes", "--config", str(config), "--explain", "/math/add",
                       "--method", "POST")
    assert code == 0
    assert "math-agent" in out
    assert "op='add'" in out
    code, out, _ = run(capsys, "routes", "--config", str(config), "--explain", "/healthz")
    assert "not traced" in out


def test_routes_bad_config_names_file_and_line(capsys, tmp_path):
    config = tmp_path / "routetrace.toml"
    config.write_text('experiment = "web"\nbogus = 1\n')
    code, _, err = run(capsys, "routes", "--config", str(config))
    assert code == 1
    line = one_line_error(err)
    assert f"{config}:2" in line
    assert "bogus" in line

