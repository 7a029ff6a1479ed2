"""
A named thread that owns one asyncio loop, for hosts that are not asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

_T = TypeVar("_T")


class LoopThread:
    """
    Runs an event loop in a named daemon thread until :meth:`close`.
    """

    def __init__(self, name: str = "ron-metrics-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """
        Run ``coro`` on the loop and wait for its result from this (other) thread.
        """
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """
        Stop the loop, cancel leftovers, and join the thread within ``timeout``.
        """
        if not self._thread.is_alive():
            return

        async def _cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Threads behind asyncio.to_thread() end with the loop, not after it.
            await asyncio.get_running_loop().shutdown_default_executor()

        try:
            self.run(_cancel_rest(), timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self.loop.close()

    def abandon_in_child(self) -> None:
        """
        In a forked child: close the descriptors the parent's loop watched.

        The thread does not exist here. Connections and listening sockets copied
        into the child would otherwise stay open after the parent closes them.
        The caller keeps this object alive, so no socket object closes its number
        a second time later.
        """
        selector = getattr(self.loop, "_selector", None)
        if selector is None:
            return
        for key in list(selector.get_map().values()):
            with contextlib.suppress(OSError):
                os.close(key.fd)
        with contextlib.suppress(OSError):
            os.close(selector.fileno())
