"""Every environment variable routetrace reads, parsed and validated in one place.

Nothing else in the package touches ``os.environ``: components receive a ``Settings``
object. A malformed value raises :class:`SettingsError` naming the variable and the value,
because a typo in a deployment's environment should fail loudly at start-up rather than
silently fall back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_TRACKING_URI", "Settings", "SettingsError", "load_settings"]

# Where traces go when MLFLOW_TRACKING_URI is unset: the local store in this directory.
DEFAULT_TRACKING_URI = "./mlruns"

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})


class SettingsError(ValueError):
    """An environment variable holds a value routetrace cannot use."""


@dataclass(frozen=True)
class Settings:
    tracing_enabled: bool = True
    tracking_uri: str | None = None
    experiment_name: str | None = None
    experiment_id: str | None = None
    trace_timeout_seconds: float | None = None
    timeout_check_interval_seconds: float = 1.0
    async_logging: bool = True
    max_workers: int = 10
    max_queue_size: int = 1000
    retry_timeout_seconds: float = 500.0
    config_path: str | None = None
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = field(default_factory=dict)
    service_name: str | None = None
    tracking_token: str | None = None
    tracking_username: str | None = None
    tracking_password: str | None = None
    insecure_tls: bool = False
    # routetrace's own knobs
    shutdown_grace_seconds: float = 5.0
    install_signal_handlers: bool = True
    spool_dir: str | None = None
    otel_bridge: bool = True


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(
        f"{name}={raw!r} is not a boolean; use one of true/false, 1/0, yes/no, on/off"
    )


def _number(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    *,
    kind: type = float,
    minimum: float = 0.0,
    exclusive: bool = False,
) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}") from None
    if value != value or value in (float("inf"), float("-inf")):  # NaN / inf
        raise SettingsError(f"{name}={raw!r} must be a finite number")
    if value < minimum or (exclusive and value == minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        raise SettingsError(f"{name}={raw!r} must be {bound}")
    return value


def _str(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


def _headers(env: Mapping[str, str], name: str) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` as OpenTelemetry defines for ``OTEL_EXPORTER_OTLP_*_HEADERS``."""
    raw = env.get(name)
    if not raw:
        return {}
    from urllib.parse import unquote

    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Do not echo the value: header values are usually credentials.
            raise SettingsError(
                f"{name} has a malformed entry (expected key=value pairs separated by commas)"
            )
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the environment into a validated :class:`Settings`."""
    env = os.environ if environ is None else environ
    otlp_headers = _headers(env, "OTEL_EXPORTER_OTLP_HEADERS")
    otlp_headers.update(_headers(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
    return Settings(
        tracing_enabled=_bool(env, "MLFLOW_TRACING_ENABLED", True),
        tracking_uri=_str(env, "MLFLOW_TRACKING_URI"),
        experiment_name=_str(env, "MLFLOW_EXPERIMENT_NAME"),
        experiment_id=_str(env, "MLFLOW_EXPERIMENT_ID"),
        trace_timeout_seconds=_number(
            env, "MLFLOW_TRACE_TIMEOUT_SECONDS", None, minimum=0, exclusive=True
        ),
        timeout_check_interval_seconds=_number(  # type: ignore[arg-type]
            env, "MLFLOW_TRACE_TIMEOUT_CHECK_INTERVAL_SECONDS", 1.0, minimum=0, exclusive=True
        ),
        async_logging=_bool(env, "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", True),
        max_workers=int(
            _number(env, "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", 10, kind=int, minimum=1)  # type: ignore[arg-type]
        ),
        max_queue_size=int(
            _number(env, "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE", 1000, kind=int, minimum=1)  # type: ignore[arg-type]
        ),
        retry_timeout_seconds=_number(  # type: ignore[arg-type]
            env, "MLFLOW_ASYNC_TRACE_LOGGING_RETRY_TIMEOUT", 500.0, minimum=0
        ),
        config_path=_str(env, "ROUTETRACE_CONFIG"),
        otlp_endpoint=_str(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        otlp_headers=otlp_headers,
        service_name=_str(env, "OTEL_SERVICE_NAME"),
        tracking_token=_str(env, "MLFLOW_TRACKING_TOKEN"),
        tracking_username=_str(env, "MLFLOW_TRACKING_USERNAME"),
        tracking_password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
        insecure_tls=_bool(env, "MLFLOW_TRACKING_INSECURE_TLS", False),
        shutdown_grace_seconds=_number(  # type: ignore[arg-type]
            env, "ROUTETRACE_SHUTDOWN_GRACE_SECONDS", 5.0, minimum=0
        ),
        install_signal_handlers=_bool(env, "ROUTETRACE_SIGNAL_HANDLERS", True),
        spool_dir=_str(env, "ROUTETRACE_SPOOL_DIR"),
        otel_bridge=_bool(env, "ROUTETRACE_OTEL_BRIDGE", True),
    )
