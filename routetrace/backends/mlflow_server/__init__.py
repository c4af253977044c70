"""The MLflow tracking server backend (``http(s)://host:port``), spoken over plain HTTP.

:class:`MlflowServerBackend` (``backend``) caches experiments and ties the parts together:
``rest`` the REST client, its credentials and error messages; ``experiments`` finding and
creating experiments and runs; ``write`` the OTLP upload and ``StartTraceV3`` of a batch;
``read`` search, get and the server's JSON turned back into traces.
"""

from routetrace.backends.mlflow_server.backend import MlflowServerBackend

__all__ = ["MlflowServerBackend"]
