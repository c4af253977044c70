"""routetrace: request tracing middleware for ASGI and WSGI services, with MLflow Tracing's API.

>>> import routetrace
>>> @routetrace.trace
... def add(a, b):
...     return a + b
"""

from routetrace import backends, entities, tracing
from routetrace.backends.replay import replay_spool
from routetrace.client import MlflowClient
from routetrace.core import tracer as _tracer_module
from routetrace.core.control import (
    TracedThreadPoolExecutor,
    configure,
    copy_context_to,
    disable,
    enable,
    enable_async_logging,
    flush,
    get_export_stats,
    is_enabled,
    set_destination,
    start_run,
)
from routetrace.core.current import (
    get_active_trace_id,
    get_current_active_span,
    update_current_trace,
)
from routetrace.core.destination import Experiment
from routetrace.core.display import disable_notebook_display, enable_notebook_display
from routetrace.core.fluent import get_last_active_trace_id, start_span, trace
from routetrace.core.model import (
    Span,
    SpanEvent,
    SpanStatus,
    SpanStatusCode,
    SpanType,
    Trace,
    TraceData,
    TraceInfo,
)
from routetrace.core.runs import active_run
from routetrace.core.settings import SettingsError
from routetrace.core.settings import load_settings as _load_settings
from routetrace.core.span import LiveSpan
from routetrace.core.tracer import get_tracer as _get_tracer  # noqa: F401 (tests, tools)
from routetrace.export.pipeline import Pipeline as _Pipeline
from routetrace.search import (
    delete_trace_tag,
    delete_traces,
    get_trace,
    get_tracking_uri,
    search_traces,
    set_experiment,
    set_trace_tag,
    set_tracking_uri,
)

__version__ = "0.1.0"

# The core never imports the floors above it: the tracer gets its exporter and its backends
# here. Plain assignments: no thread, no file, nothing starts until the first trace.
_tracer_module.install(exporter_factory=_Pipeline, backend_factory=backends.backend_for_uri,
                       clear_backends=backends.clear_cache)

__all__ = [
    "Experiment",
    "LiveSpan",
    "MlflowClient",
    "SettingsError",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TracedThreadPoolExecutor",
    "__version__",
    "active_run",
    "configure",
    "copy_context_to",
    "delete_trace_tag",
    "delete_traces",
    "disable",
    "disable_notebook_display",
    "enable",
    "enable_async_logging",
    "enable_notebook_display",
    "entities",
    "flush",
    "get_active_trace_id",
    "get_current_active_span",
    "get_export_stats",
    "get_last_active_trace_id",
    "get_trace",
    "get_tracking_uri",
    "is_enabled",
    "replay_spool",
    "search_traces",
    "set_destination",
    "set_experiment",
    "set_trace_tag",
    "set_tracking_uri",
    "start_run",
    "start_span",
    "trace",
    "tracing",
    "update_current_trace",
]



def _is_cli_process() -> bool:
    """The ``routetrace`` command imports this package before its ``main`` can catch
    anything; it reads the settings itself and reports a bad variable as one line."""
    import os
    import sys

    script = os.path.basename(getattr(sys.modules.get("__main__"), "__file__", None) or "")
    return script in ("routetrace", "routetrace.exe", "routetrace-script.py")


# Read the environment now: a malformed variable fails at start-up, naming itself. Only read:
# the tracer, OpenTelemetry and any thread or file wait for the first trace.
if not _is_cli_process():
    _load_settings()
