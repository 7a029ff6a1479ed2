"""
Supervision: restart a sink whose worker died, with capped exponential backoff.

The supervisor polls :meth:`Sink.alive` of every running sink. A dead sink is
counted (``service_restarts_total{service}``), logged, and restarted after a delay
that doubles with each restart in the last minute (capped). The switch lock is held
only to look and to restart — never across the backoff sleep, so a reload never
waits for a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ron_metrics._switch import SinkSet
from ron_metrics.exporters.base import Sink
from ron_metrics.logs import log_event

__all__ = ["Supervisor"]

_log = logging.getLogger("ron_metrics.runtime")
SUPERVISE_INTERVAL = 0.05
RESTART_BACKOFF_BASE = 0.1
RESTART_BACKOFF_CAP = 5.0
RESTART_WINDOW = 60.0


class Supervisor:
    """
    Watches a :class:`SinkSet` until :meth:`stop`.
    """

    def __init__(
        self,
        sinks: SinkSet,
        *,
        on_restart: Callable[[str], None],
        interval: float = SUPERVISE_INTERVAL,
    ) -> None:
        self._sinks = sinks
        self._on_restart = on_restart
        self._interval = interval
        self._restarts: dict[str, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """
        Begin watching on the running loop.
        """
        self._task = asyncio.get_running_loop().create_task(
            self._watch(), name="ron-metrics-supervisor"
        )

    async def stop(self) -> None:
        """
        Stop watching (a restart in progress is cancelled).
        """
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def backoff(self, name: str) -> float:
        """
        Record a restart of ``name`` now; the delay before it.
        """
        now = time.monotonic()
        recent = [t for t in self._restarts.get(name, ()) if now - t < RESTART_WINDOW]
        recent.append(now)
        self._restarts[name] = recent
        return float(
            min(RESTART_BACKOFF_CAP, RESTART_BACKOFF_BASE * 2 ** (len(recent) - 1))
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            async with self._sinks.lock:
                dead = [sink for sink in self._sinks.sinks() if not sink.alive()]
            for sink in dead:
                await self._revive(sink)

    async def _revive(self, sink: Sink) -> None:
        delay = self.backoff(sink.name)
        self._on_restart(sink.name)
        log_event(
            _log, logging.ERROR, "sink_died", service=sink.name, restart_in_s=delay
        )
        await asyncio.sleep(delay)
        async with self._sinks.lock:
            # A reload may have replaced it meanwhile; then there is nothing to do.
            if self._sinks.get(sink.name) is not sink or sink.alive():
                return
            try:
                await sink.restart()
            except Exception as exc:
                log_event(
                    _log,
                    logging.ERROR,
                    "sink_restart_failed",
                    service=sink.name,
                    error=repr(exc),
                )
            else:
                log_event(_log, logging.INFO, "sink_restarted", service=sink.name)
