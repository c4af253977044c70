"""``benchmarks.run_all``'s command line: a mistyped part is an error, not an empty run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_part_is_refused_with_the_parts_it_knows() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--parts", "http,htp"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--parts: unknown 'htp'; choose from inprocess, http, httptools, export" in out.stderr
    assert out.stdout == ""  # nothing ran


def test_an_unknown_configuration_is_refused_with_the_ones_it_knows() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--configs", "bare,dd"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--configs: unknown 'dd'; choose from bare, routetrace," in out.stderr
    assert out.stdout == ""
