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

Fork: this module owns every fork hook, registered with ``os.register_at_fork`` when it is
imported (no thread, no file), so that a server forking after import and before any trace
(gunicorn ``--preload``) already gets children with their own ids, locks and queue. The core
exposes what a child must renew (``tracer.after_fork_in_child``,
``live_trace.after_fork_in_child``); a part above the core (the backends) adds its own hooks
with :func:`on_fork`.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from routetrace.core import live_trace, tracer

__all__ = ["ForkHooks", "install", "on_fork", "settle", "shutdown"]

log = logging.getLogger("routetrace")


class ForkHooks(NamedTuple):
    before: Callable[[], None] | None
    after_in_parent: Callable[[], None] | None
    after_in_child: Callable[[], None] | None


_fork_hooks: list[ForkHooks] = []


def on_fork(*, before: Callable[[], None] | None = None,
            after_in_parent: Callable[[], None] | None = None,
            after_in_child: Callable[[], None] | None = None) -> None:
    """Run these around every ``os.fork``, after the core's own: ``before`` in the parent just
    before (in reverse order of registration, as ``os.register_at_fork`` does), the others
    right after. A hook that raises is logged; the fork goes on."""
    _fork_hooks.append(ForkHooks(before, after_in_parent, after_in_child))


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
        tracer.get_tracer().hurry()
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
    current = tracer.peek_tracer()
    if current is not None:
        try:
            current.shutdown(reason=reason)
        except Exception:
            log.exception("routetrace: shutdown failed")


def settle(reason: str = "lifespan shutdown") -> None:
    """The server ended the app (ASGI lifespan shutdown): end where ``shutdown`` ends (written,
    spooled, or counted with a summary) without closing, since the server may start the app
    again. Blocks up to the grace period; never raises."""
    current = tracer.peek_tracer()
    if current is not None:
        try:
            current.settle(reason)
        except Exception:
            log.exception("routetrace: settling the export at %s failed", reason)


def _at_exit() -> None:
    shutdown(reason="exit")


def _run(hook: Callable[[], None] | None, what: str) -> None:
    if hook is None:
        return
    try:
        hook()
    except Exception:
        log.exception("routetrace: %s failed", what)


def _before_fork() -> None:
    for hooks in reversed(_fork_hooks):
        _run(hooks.before, "preparing for fork")


def _after_fork_in_parent() -> None:
    for hooks in _fork_hooks:
        _run(hooks.after_in_parent, "resuming after fork")


def _after_fork_in_child() -> None:
    global _shutdown_done
    _shutdown_done = False
    live_trace.after_fork_in_child()
    tracer.after_fork_in_child()
    for hooks in _fork_hooks:
        _run(hooks.after_in_child, "starting afresh after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
