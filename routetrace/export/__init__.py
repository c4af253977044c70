"""The export pipeline: finished traces leave the request path, are written by a worker,
retried, spooled, and flushed at every exit. Imports only ``routetrace.core``."""
