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

