"""Process lifecycle: flush at exit and on SIGTERM, start afresh after ``fork``.

SIGTERM: routetrace installs its handler when tracing starts in the main thread and keeps the
handler it found. When that was a Python handler (gunicorn's, the app's, uvicorn's), routetrace
calls it and lets it decide how the server shuts down; the flush then happens at exit (atexit)
or at ASGI lifespan shutdown (``settle``: uvicorn then re-raises SIGTERM with the default
handler, so no exit hook runs after it). Both end in the same place: every trace written,
spooled, or counted in a summary beside the spool. When it was the default (the process
would just die), routetrace first ends open traces with ERROR, flushes within the grace
period, then restores the default and re-sends the signal, so the process dies exactly as it
would have.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["fresh_lock_after_fork", "install", "settle", "shutdown"]

log = logging.getLogger("routetrace")


def fresh_lock_after_fork(module: str, name: str) -> None:
    """Give a forked child a new ``threading.Lock`` as the module global ``name``: a fork
    while another thread held the parent's would leave the child's copy locked for ever."""
    if hasattr(os, "register_at_fork"):
        def renew() -> None:
            setattr(sys.modules[module], name, threading.Lock())

        os.register_at_fork(after_in_child=renew)


_installed = False
_previous_sigterm: Any = None
_shutdown_done = False


def install(install_signal_handler: bool) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    # threading's exit hooks run before atexit's, and also in multiprocessing's forked
    # children, which leave through os._exit and never run atexit handlers.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_at_exit)
        except RuntimeError:  # the interpreter is already shutting down
            pass
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
    if install_signal_handler:
        install_sigterm_handler()


def install_sigterm_handler() -> bool:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm:
            return True
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or an exotic platform
        return False
    _previous_sigterm = current
    return True


def _on_sigterm(signum: int, frame: Any) -> None:
    previous = _previous_sigterm
    if callable(previous):
        from routetrace.core.tracer import get_tracer

        get_tracer().hurry()
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    shutdown(reason="SIGTERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def shutdown(reason: str = "exit") -> None:
    global _shutdown_done
    if _shutdown_done:
        return
    _shutdown_done = True
    from routetrace.core.tracer import peek_tracer

    tracer = peek_tracer()
    if tracer is not None:
        try:
            tracer.shutdown(reason=reason)
        except Exception:
            log.exception("routetrace: shutdown failed")


def settle(reason: str = "lifespan shutdown") -> None:
    """The server ended the app (ASGI lifespan shutdown): end where ``shutdown`` ends (written,
    spooled, or counted with a summary) without closing, since the server may start the app
    again. Blocks up to the grace period; never raises."""
    from routetrace.core.tracer import peek_tracer

    tracer = peek_tracer()
    if tracer is not None:
        try:
            tracer.settle(reason)
        except Exception:
            log.exception("routetrace: settling the export at %s failed", reason)


def _at_exit() -> None:
    shutdown(reason="exit")


def _backends() -> list:
    from routetrace import backends

    pid = os.getpid()
    return [b for (_, owner), b in list(backends._cache.items()) if owner == pid]


def _before_fork() -> None:
    for backend in _backends():
        try:
            backend.before_fork()
        except Exception:
            log.exception("routetrace: preparing %s for fork failed", backend.uri)


def _after_fork_in_parent() -> None:
    for backend in _backends():
        try:
            backend.after_fork_in_parent()
        except Exception:
            log.exception("routetrace: resuming %s after fork failed", backend.uri)


def _after_fork_in_child() -> None:
    global _shutdown_done
    _shutdown_done = False
    from routetrace.core.tracer import peek_tracer

    tracer = peek_tracer()
    if tracer is not None:
        tracer.after_fork_in_child()
