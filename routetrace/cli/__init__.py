"""The ``routetrace`` command: look at, clean up and move traces without an MLflow server.

Every command reads the same settings as the library (``MLFLOW_TRACKING_URI`` and friends;
``--tracking-uri`` wins). argparse only, so the core install stays light: the viewer's
Starlette/uvicorn and the demo's httpx are imported by the commands that need them.

Errors are one line on stderr and exit status 2 (usage: a bad option, variable or answer) or 1
(the work failed: a bad filter, an unknown trace, a backend error); ``--debug`` shows the
traceback instead. Text from traces is request data: control characters are escaped before
they reach the terminal.

The package: ``parser`` (arguments and dispatch), ``common`` (errors, argument types, the
tracer and backend), ``render`` (terminal output), and one module per command family
(``traces``, ``experiments``, ``stats``, ``routes``, ``push``, ``ui``, ``demo``).
"""

from routetrace.cli.common import CliError
from routetrace.cli.parser import main

__all__ = ["CliError", "main"]
