"""What the HTTP backends share, and that the OTLP backend needs nothing of the MLflow one."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import time

import httpx
import pytest

from routetrace.backends.http import import_httpx, retry_after_seconds


def _answer(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    return httpx.Response(503, headers=headers)


@pytest.mark.parametrize(("header", "seconds"), [
    pytest.param(None, None, id="no header"),
    pytest.param("7", 7.0, id="seconds"),
    pytest.param("1.5", 1.5, id="fractional seconds"),
    pytest.param("-3", 0.0, id="negative is now"),
    pytest.param("86400", 300.0, id="capped at five minutes"),
    pytest.param("soon", None, id="neither a number nor a date"),
])
def test_retry_after_reads_seconds_and_caps_them(header, seconds):
    assert retry_after_seconds(_answer(header)) == seconds


def test_retry_after_reads_an_http_date_as_seconds_from_now():
    date = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after_seconds(_answer(date)) <= 60


def test_import_httpx_returns_the_module():
    assert import_httpx("otlp") is httpx


def test_the_otlp_backend_does_not_import_the_mlflow_server_backend():
    code = ("import sys, routetrace.backends.otlp; "
            "print('routetrace.backends.mlflow_server' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
