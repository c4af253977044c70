"""The functions ``mlflow.tracing`` has, under the same names, so that code written as
``mlflow.tracing.disable()`` runs unchanged with ``import routetrace as mlflow``."""

from routetrace.core.control import configure, disable, enable, is_enabled, set_destination
from routetrace.core.display import disable_notebook_display, enable_notebook_display

__all__ = [
    "configure",
    "disable",
    "disable_notebook_display",
    "enable",
    "enable_notebook_display",
    "is_enabled",
    "set_destination",
]
