"""Argument types and the tracer the commands share."""

from __future__ import annotations

import pytest

from routetrace.cli.common import parse_age
from tests.cli.conftest import one_line_error, run


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43200),
                                              ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)])
def test_parse_age(text, seconds):
    assert parse_age(text) == seconds


def test_bad_tracking_uri(capsys):
    code, _, err = run(capsys, "--tracking-uri", "gopher://x", "traces", "list")
    assert code == 2
    assert "scheme" in one_line_error(err)

