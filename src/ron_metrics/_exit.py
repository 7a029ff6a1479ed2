"""
Exit is part of the life cycle: a runtime still running when the interpreter exits
is shut down — final collection, final export — before Python refuses new threads.

``atexit`` is too late for that: by the time its callbacks run, the interpreter
has already told ``concurrent.futures`` to refuse new work (so the final export,
which runs in a worker thread, fails with "cannot schedule new futures after
interpreter shutdown"). ``threading`` keeps its own list of exit callbacks, run
before that happens and before non-daemon threads are joined, in reverse order of
registration: registered after ``concurrent.futures.thread`` is imported, ours runs
first. Where that hook is missing (another Python), ``atexit`` is the fallback.

What this cannot cover: ``SIGKILL``, ``os._exit()`` and a crash of the interpreter
end the process without running any exit callback.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from ron_metrics.logs import log_event

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EXIT_TIMEOUT_SECONDS", "forget_at_exit", "stop_all", "stop_at_exit"]

_log = logging.getLogger("ron_metrics.runtime")
# The deadline of the shutdown a runtime still running at exit gets.
EXIT_TIMEOUT_SECONDS = 5.0
# Why a start_async runtime cannot be stopped at exit: its loop is gone.
LOOP_ENDED = (
    "the event loop this runtime was started on (start_async) has ended; await"
    " runtime.shutdown_async() before it ends to deliver the final counts"
)


# Running runtimes, held strongly (a program that started one and kept no
# reference still expects its counts delivered); a runtime leaves at shutdown.
_live: dict[int, Any] = {}


class _Hook:
    registered = False  # once per process (a forked child inherits it)


def _stop(runtime: Any) -> None:
    # The interpreter exits with this runtime (a Runtime, typed loosely: this module
    # sits below it) running: deliver as shutdown() would, on a loop that still runs.
    if os.getpid() != runtime._pid or runtime.state.value != "running":
        return
    loop = runtime._loop
    if runtime._loop_thread is None and not (loop and loop.is_running()):
        log_event(_log, logging.WARNING, "exit_without_shutdown", why=LOOP_ENDED)
        return
    runtime.shutdown(EXIT_TIMEOUT_SECONDS)


def stop_all() -> None:
    """
    Shut every runtime still running in this process down (their final export).
    """
    for runtime in list(_live.values()):
        try:
            _stop(runtime)
        except Exception as exc:  # exit goes on; say why in one JSON line
            log_event(_log, logging.ERROR, "exit_shutdown_failed", error=repr(exc))
    _live.clear()


def _register(hook: Callable[[], None]) -> None:
    # Imported first, the pool registers its own hook first, so ours runs before it.
    importlib.import_module("concurrent.futures.thread")
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
        return
    try:
        register(hook)
    except RuntimeError:  # the interpreter is already shutting down
        atexit.register(hook)


def stop_at_exit(runtime: Any) -> None:
    """
    Shut ``runtime`` down when the interpreter exits, unless it was stopped before.

    A forked child inherits the hook and the runtimes; each runtime stops only in
    the process it runs in.
    """
    _live[id(runtime)] = runtime
    if not _Hook.registered:
        _Hook.registered = True
        _register(stop_all)


def forget_at_exit(runtime: Any) -> None:
    """
    ``runtime`` was shut down: nothing to do for it at exit.
    """
    _live.pop(id(runtime), None)
