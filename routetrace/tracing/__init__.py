"""The tracing core: spans, traces, context, export. The public names are re-exported by
``routetrace``; import from there."""
