"""Terminal rendering."""

from __future__ import annotations

import io

from routetrace.cli.render import Progress


def test_progress_bar_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress("deleting", 10, stream=tty)
    bar.update(5, force=True)
    bar.close(10)
    assert "\rdeleting [" in tty.getvalue()
    assert "10/10" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
    plain = io.StringIO()
    bar = Progress("deleting", 10, stream=plain)
    bar.update(5, force=True)
    bar.close(10)
    assert plain.getvalue() == ""



def test_raise_failures_names_the_first_five_on_stderr_then_fails_the_command(capsys):
    import pytest

    from routetrace.cli.common import CliError
    from routetrace.cli.render import raise_failures

    raise_failures([], "not pushed", "unused")  # nothing failed: nothing said, no error
    assert capsys.readouterr().err == ""
    with pytest.raises(CliError, match=r"^7 failed$"):
        raise_failures([f"batch {i}\x1b[31m" for i in range(7)], "not pushed", "7 failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 5
    assert lines[0].endswith("not pushed: batch 0\\x1b[31m")
