"""The tracing core: spans, traces, context, export. The public names are re-exported by
``routetrace``; import from there.

``routetrace.tracing`` also answers the functions ``mlflow.tracing`` has (``disable``,
``enable``, ``configure``, ``set_destination``, the notebook display switches), so code
written as ``mlflow.tracing.disable()`` runs unchanged. They are looked up on first use: the
core's own modules import this package first, and an eager import of the fluent API here
would load it halfway through theirs.
"""

from typing import Any

__all__ = [
    "configure",
    "disable",
    "disable_notebook_display",
    "enable",
    "enable_notebook_display",
    "is_enabled",
    "set_destination",
]

_PUBLIC = {
    "configure": "routetrace.tracing.fluent",
    "disable": "routetrace.tracing.fluent",
    "enable": "routetrace.tracing.fluent",
    "is_enabled": "routetrace.tracing.fluent",
    "set_destination": "routetrace.tracing.destination",
    "disable_notebook_display": "routetrace.tracing.display",
    "enable_notebook_display": "routetrace.tracing.display",
}


def __getattr__(name: str) -> Any:
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'routetrace.tracing' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
