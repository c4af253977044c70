"""One settings module reads every environment variable; bad values name themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from routetrace.core.settings import Settings, SettingsError, load_settings


def test_defaults():
    s = load_settings({})
    assert s == Settings()
    assert s.tracing_enabled and s.async_logging
    assert (s.max_workers, s.max_queue_size, s.retry_timeout_seconds) == (10, 1000, 500.0)
    assert s.trace_timeout_seconds is None and s.timeout_check_interval_seconds == 1.0


def test_every_variable_is_read():
    s = load_settings({
        "MLFLOW_TRACING_ENABLED": "no",
        "MLFLOW_TRACKING_URI": "sqlite:///x.db",
        "MLFLOW_EXPERIMENT_NAME": "exp",
        "MLFLOW_EXPERIMENT_ID": "7",
        "MLFLOW_TRACE_TIMEOUT_SECONDS": "2.5",
        "MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS": "0.2",
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
        "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS": "3",
        "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": "50",
        "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT": "0",
        "ROUTETRACE_CONFIG": "conf.toml",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=3,Api-Key=x%20y",
        "OTEL_SERVICE_NAME": "svc",
        "MLFLOW_TRACKING_TOKEN": "tok",
        "MLFLOW_TRACKING_USERNAME": "u",
        "MLFLOW_TRACKING_PASSWORD": "p",
        "MLFLOW_TRACKING_INSECURE_TLS": "1",
    })
    assert s.tracing_enabled is False and s.async_logging is False
    assert s.tracking_uri == "sqlite:///x.db"
    assert (s.experiment_name, s.experiment_id) == ("exp", "7")
    assert (s.trace_timeout_seconds, s.timeout_check_interval_seconds) == (2.5, 0.2)
    assert (s.max_workers, s.max_queue_size, s.retry_timeout_seconds) == (3, 50, 0.0)
    assert s.config_path == "conf.toml"
    assert s.otlp_endpoint == "http://c:4318/v1/traces"
    assert s.otlp_headers == {"a": "1", "b": "3", "api-key": "x y"}
    assert s.service_name == "svc"
    assert (s.tracking_token, s.tracking_username, s.tracking_password) == ("tok", "u", "p")
    assert s.insecure_tls is True


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "FALSE", " No "])
def test_tracing_disabled_spellings(value):
    assert load_settings({"MLFLOW_TRACING_ENABLED": value}).tracing_enabled is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("MLFLOW_TRACE_TIMEOUT_SECONDS", "abc", "is not a number", id="not a number"),
        pytest.param("MLFLOW_TRACE_TIMEOUT_SECONDS", "0", "greater than 0", id="zero timeout"),
        pytest.param("MLFLOW_TRACE_TIMEOUT_SECONDS", "nan", "finite", id="nan"),
        pytest.param("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "2.5", "not an integer",
                     id="float workers"),
        pytest.param("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE", "0", "at least 1",
                     id="empty queue"),
        pytest.param("MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT", "-1", "at least 0",
                     id="negative retry"),
        pytest.param("MLFLOW_TRACING_ENABLED", "maybe", "not a boolean", id="bad bool"),
        pytest.param("OTEL_EXPORTER_OTLP_HEADERS", "novalue", "malformed", id="bad headers"),
    ],
)
def test_malformed_values_name_the_variable_and_value(name, value, message):
    with pytest.raises(SettingsError, match=message) as info:
        load_settings({name: value})
    assert name in str(info.value)
    if name != "OTEL_EXPORTER_OTLP_HEADERS":  # header values may be secrets: never echoed
        assert repr(value) in str(info.value)


def test_header_values_are_not_echoed():
    with pytest.raises(SettingsError) as info:
        load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "secret-token"})
    assert "secret-token" not in str(info.value)


def test_bad_variable_fails_at_import_with_the_name():
    env = {"MLFLOW_TRACE_TIMEOUT_SECONDS": "abc", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", "import routetrace"], env=env, capture_output=True, text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "MLFLOW_TRACE_TIMEOUT_SECONDS='abc' is not a number" in proc.stderr
