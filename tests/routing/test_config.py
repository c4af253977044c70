from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routetrace.core.destination import Experiment
from routetrace.routing import ConfigError, RouteTable, load, load_file

GOOD = """\
experiment = "web"
service_name = "agents-api"
capture_headers = ["user-agent", "content-type", "x-request-id"]
redact_headers = ["authorization", "cookie", "set-cookie", "x-api-key"]
capture_body = false
trace_id_header = "x-trace-id"
exclude = ["/healthz", "/metrics", "/static/*"]

[[routes]]
path = "/math/{op}"
methods = ["POST"]
experiment = "math-agent"
sample_rate = 1.0
capture_body = 16384
timeout_seconds = 60

[[routes]]
path = "/chat/**"
experiment = "chat-agent"
"""


def write(tmp_path: Path, text: str, name: str = "routetrace.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, name: str = "routetrace.toml") -> ConfigError:
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    return info.value


def test_framework_spans_is_off_unless_the_table_turns_it_on(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, 'experiment = "web"\n')).framework_spans is False
    assert load_file(write(tmp_path, "framework_spans = true\n")).framework_spans is True


def test_the_design_example_loads(tmp_path: Path) -> None:
    table = load_file(write(tmp_path, GOOD))
    assert table.default_experiment == Experiment(name="web")
    assert table.service_name == "agents-api"
    assert table.exclude == ("/healthz", "/metrics", "/static/*")
    math, chat = table.rules
    assert math.methods == frozenset({"POST"})
    assert math.capture_body == 16384
    assert math.timeout_seconds == 60
    assert math.line == 9
    assert chat.line == 17
    assert chat.capture_body == 0  # inherits the top level
    assert chat.capture_headers == frozenset({"user-agent", "content-type", "x-request-id"})
    assert table.match("/chat/1", "GET") is chat


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        pytest.param('[[routes]]\npath = "/chat/**"\nexperimnet = "chat"\n', 3,
                     "routes[0].experimnet", "did you mean 'experiment'?", id="typo in a rule"),
        pytest.param('expriment = "web"\n', 1, "expriment", "did you mean 'experiment'?",
                     id="typo at the top"),
        pytest.param('experiment = "web"\nframework_spans = "yes"\n', 2, "framework_spans",
                     "must be true or false", id="framework_spans not a boolean"),
        pytest.param('colour = "blue"\n', 1, "colour", "Allowed keys: experiment",
                     id="unknown key lists the allowed ones"),
        pytest.param('path = "/x"\n', 1, "path", "belongs inside a [[routes]] table",
                     id="route key at the top"),
        pytest.param('[[routes]]\npath = "/x"\nexclude = ["/y"]\n', 3, "routes[0].exclude",
                     "only allowed at the top level", id="top key in a rule"),
        pytest.param('[[routes]]\npath = "/a"\n\n[[routes]]\npath = "/b"\nsample_rate = 1.5\n',
                     6, "routes[1].sample_rate", "between 0 and 1", id="sample rate above 1"),
        pytest.param('[[routes]]\npath = "/a"\nsample_rate = -0.1\n', 3,
                     "routes[0].sample_rate", "between 0 and 1", id="sample rate below 0"),
        pytest.param('[[routes]]\npath = "/a"\nsample_rate = "half"\n', 3,
                     "routes[0].sample_rate", "not a string", id="sample rate as text"),
        pytest.param('[[routes]]\npath = "/a"\ncapture_body = -1\n', 3,
                     "routes[0].capture_body", "non-negative number of bytes",
                     id="negative body cap"),
        pytest.param('capture_body = "yes"\n', 1, "capture_body", "true, false or a",
                     id="body cap of the wrong type"),
        pytest.param('[[routes]]\npath = "/a"\ntimeout_seconds = 0\n', 3,
                     "routes[0].timeout_seconds", "greater than 0", id="zero timeout"),
        pytest.param('[[routes]]\npath = "/a"\ntimeout_seconds = -5\n', 3,
                     "routes[0].timeout_seconds", "greater than 0", id="negative timeout"),
        pytest.param('[[routes]]\npath = "/a"\ntimeout_seconds = true\n', 3,
                     "routes[0].timeout_seconds", "not a boolean", id="boolean timeout"),
        pytest.param('[[routes]]\npath = "/users/{id"\n', 2, "routes[0].path", "unbalanced",
                     id="bad pattern"),
        pytest.param('[[routes]]\npath = "users"\n', 2, "routes[0].path",
                     "must start with '/'", id="relative pattern"),
        pytest.param('exclude = ["/ok", "/a/x**"]\n', 1, "exclude[1]", "whole path segment",
                     id="bad exclude pattern"),
        pytest.param('[[routes]]\nmethods = ["GET"]\n', 1, "routes[0]", "needs a path",
                     id="rule without a path"),
        pytest.param('[[routes]]\npath = "/a"\nmethods = "GET"\n', 3, "routes[0].methods",
                     "list of strings", id="methods not a list"),
        pytest.param('[[routes]]\npath = "/a"\nmethods = ["GE T"]\n', 3,
                     "routes[0].methods[0]", "not an HTTP method", id="bad method"),
        pytest.param('[[routes]]\npath = "/a"\nmethods = []\n', 3, "routes[0].methods",
                     "at least one method", id="empty methods"),
        pytest.param('[[routes]]\npath = "/a"\nenabled = "no"\n', 3, "routes[0].enabled",
                     "true or false", id="enabled as text"),
        pytest.param('[[routes]]\npath = "/a"\nexperiment = ""\n', 3,
                     "routes[0].experiment", "non-empty", id="empty experiment"),
        pytest.param('[[routes]]\npath = "/a"\nexperiment = 3\n', 3, "routes[0].experiment",
                     "must be a string", id="experiment as a number"),
        pytest.param('[[routes]]\npath = "/a"\ntags = ["x"]\n', 3, "routes[0].tags",
                     "table of names", id="tags not a table"),
        pytest.param('[[routes]]\npath = "/a"\n[routes.tags]\nteam = ["x"]\n', 4,
                     "routes[0].tags.team", "string, number or boolean",
                     id="tag value not scalar"),
        pytest.param('capture_headers = ["*", "x"]\n', 1, "capture_headers",
                     "cannot be combined", id="star with names"),
        pytest.param('redact_headers = ["bad header"]\n', 1, "redact_headers[0]",
                     "not a valid header name", id="bad header name"),
        pytest.param('trace_id_header = "x trace"\n', 1, "trace_id_header",
                     "not a valid header name", id="bad trace id header"),
        pytest.param('routes = "all"\n', 1, "routes", "array of tables", id="routes not a list"),
        pytest.param('routes = [{ path = "/a", experimnet = "x" }]\n', 1,
                     "routes[0].experimnet", "did you mean", id="inline table: line of routes"),
    ],
)
def test_errors_name_file_line_key_and_what_is_allowed(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    err = error_of(tmp_path, text)
    assert err.file == str(tmp_path / "routetrace.toml")
    assert err.line == line
    assert err.key == key
    assert fragment in err.problem
    assert str(err).startswith(f"{err.file}:{line}: {key}: ")


def test_error_line_in_a_longer_file(tmp_path: Path) -> None:
    text = GOOD + '\n[[routes]]\npath = "/x"\n# a comment\nspan_typ = "LLM"\n'
    err = error_of(tmp_path, text)
    assert err.line == GOOD.count("\n") + 5
    assert "did you mean 'span_type'?" in err.problem


def test_multiline_strings_do_not_confuse_the_line_finder(tmp_path: Path) -> None:
    text = 'service_name = """\nexperimnet = "not a key"\n"""\n[[routes]]\npath = "/a"\nbad = 1\n'
    err = error_of(tmp_path, text)
    assert (err.line, err.key) == (6, "routes[0].bad")


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'experiment = "web"\nroutes = [\n  { path = \n')
    assert err.line is not None
    assert "invalid TOML" in str(err)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "routetrace.toml"
    path.write_bytes(b'experiment = "web"\nservice_name = "\xff"\n')
    with pytest.raises(ConfigError, match=r":2: is not UTF-8"):
        load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_file(tmp_path / "nope.toml")


def test_a_missing_relative_file_names_the_directory_it_was_looked_for_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_file("conf/routetrace.toml")
    assert str(info.value).startswith(
        f"conf/routetrace.toml: no such file in {tmp_path / 'conf'} (a relative path is read "
        "from the working directory"
    )


def test_a_missing_routetrace_config_file_says_which_variable_named_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_tracer,
) -> None:
    monkeypatch.chdir(tmp_path)
    reset_tracer(ROUTETRACE_CONFIG="missing.toml")
    with pytest.raises(ConfigError, match=rf"missing.toml: no such file in {tmp_path} .* "
                       r"\(named by ROUTETRACE_CONFIG\)"):
        load()


def test_pyproject_section_with_lines(tmp_path: Path) -> None:
    text = """\
    [project]
    name = "x"

    [tool.routetrace]
    experiment = "web"

    [[tool.routetrace.routes]]
    path = "/chat/**"
    experiment = "chat"

    [[tool.routetrace.routes]]
    path = "/math/{op}"
    experimnet = "math"
    """
    err = error_of(tmp_path, text, "pyproject.toml")
    assert (err.line, err.key) == (13, "tool.routetrace.routes[1].experimnet")
    fixed = write(tmp_path, textwrap.dedent(text).replace("experimnet", "experiment"),
                  "pyproject.toml")
    assert [r.pattern for r in load_file(fixed).rules] == ["/chat/**", "/math/{op}"]


def test_pyproject_without_the_section(tmp_path: Path) -> None:
    assert "no [tool.routetrace]" in str(error_of(tmp_path, '[project]\nname = "x"\n',
                                                  "pyproject.toml"))


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_tracer
                         ) -> None:
    assert load(cwd=tmp_path).rules == ()  # nothing anywhere: the defaults
    write(tmp_path, '[tool.routetrace]\nexperiment = "from-pyproject"\n', "pyproject.toml")
    assert load(cwd=tmp_path).default_experiment == Experiment(name="from-pyproject")
    write(tmp_path, 'experiment = "from-toml"\n')
    assert load(cwd=tmp_path).default_experiment == Experiment(name="from-toml")
    other = write(tmp_path, 'experiment = "from-env"\n', "elsewhere.toml")
    reset_tracer(ROUTETRACE_CONFIG=str(other))
    assert load(cwd=tmp_path).default_experiment == Experiment(name="from-env")
    reset_tracer(ROUTETRACE_CONFIG=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="named by ROUTETRACE_CONFIG"):
        load(cwd=tmp_path)


def test_pyproject_of_another_tool_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, '[tool.ruff]\nline-length = 100\n', "pyproject.toml")
    assert isinstance(load(cwd=tmp_path), RouteTable)


def test_a_table_or_a_mapping_passes_through() -> None:
    table = load({"experiment": "x"})
    assert load(table) is table
    with pytest.raises(ConfigError, match="<mapping>: experimnet"):
        load({"experimnet": "x"})
