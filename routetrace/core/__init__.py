"""The core: spans, traces, context, destination, settings, the record of a finished trace.

It imports nothing above it (no export, backend, routing, middleware or CLI code); the
public names are re-exported by ``routetrace``: import from there."""
