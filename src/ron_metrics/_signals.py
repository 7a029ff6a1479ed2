"""
Signals inside a program started by ``ron-metrics run`` (installed by the runner
only: a program that calls ``ron_metrics.start()`` itself keeps its own signals).

- ``SIGTERM`` with no handler of the program's would end the process at once, with
  no exit callback, so the counts since the last export would be lost. Where the
  program left it at the default, ron-metrics handles it: the running runtimes
  shut down (final export), then the signal ends the process as before (same exit
  status). Servers that handle ``SIGTERM`` themselves (gunicorn, uvicorn) keep
  their handling; uvicorn, which re-raises the signal after its graceful shutdown,
  reaches ours at the end.
- ``SIGHUP`` reloads the config file the runner was given (``RON_METRICS_CONFIG``),
  in a thread of its own, and then calls the program's own ``SIGHUP`` handler if it
  installed one, whenever it did: ``signal.signal(SIGHUP, ...)`` by the program is
  kept as the next handler in the chain, never dropped. It never ends the program.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ron_metrics.logs import log_event

if TYPE_CHECKING:
    from ron_metrics.runtime import Runtime

__all__ = ["install_runner_signals"]

_log = logging.getLogger("ron_metrics.runtime")

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _HangupChain:
    """
    Our SIGHUP handler stays installed; what the program installs is called after.
    """

    def __init__(self, reload: Callable[[], None]) -> None:
        self._reload = reload
        self.program: Handler = signal.SIG_DFL

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(
            target=self._reload, name="ron-metrics-sighup", daemon=True
        ).start()
        if callable(self.program):
            self.program(signum, frame)


def _patch_signal_module(chain: _HangupChain) -> None:
    original_signal = signal.signal
    original_getsignal = signal.getsignal

    def chained_signal(signalnum: int, handler: Handler) -> Handler:
        if signalnum != signal.SIGHUP:
            return original_signal(signalnum, handler)
        previous, chain.program = chain.program, handler
        return previous

    def chained_getsignal(signalnum: int) -> Handler:
        if signalnum == signal.SIGHUP:
            return chain.program
        return original_getsignal(signalnum)

    signal.signal = chained_signal
    signal.getsignal = chained_getsignal


def _reload_from_file(runtime: Runtime) -> None:
    from ron_metrics.config import load_config

    try:
        changed = runtime.reload(load_config())  # as at start: the file and the env
    except Exception as exc:  # a bad file or a restart-only key: keep running
        log_event(_log, logging.ERROR, "sighup_reload_failed", error=str(exc))
        return
    log_event(_log, logging.INFO, "sighup_reloaded", changed=list(changed))


def _terminate(signum: int, _frame: FrameType | None) -> None:
    from ron_metrics._exit import stop_all

    stop_all()
    # Then end as the default disposition would have: killed by the signal.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_runner_signals(runtime: Runtime) -> None:
    """
    Install the runner's ``SIGTERM`` and ``SIGHUP`` handling (main thread only).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    path = os.environ.get("RON_METRICS_CONFIG", "")

    def reload() -> None:
        if path:
            _reload_from_file(runtime)
        else:
            log_event(
                _log,
                logging.INFO,
                "sighup_ignored",
                why="no config file was given to the runner (--config)",
            )

    chain = _HangupChain(reload)
    previous = signal.getsignal(signal.SIGHUP)
    if previous not in (signal.SIG_DFL, signal.SIG_IGN, None):
        chain.program = previous
    signal.signal(signal.SIGHUP, chain)
    _patch_signal_module(chain)
