"""
Single-flight collection for ``/metrics``.

Concurrent scrapes share one in-flight collection, and within it one encoding per
(format, gzip) pair. Collection and encoding run on a small owned thread pool, so
the event loop (and ``/healthz``) stays responsive while a large scrape renders;
the cyclic garbage collector is held off from the start of a collection until the
last scrape using it has its response (see ``ron_metrics._gc_pause``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ron_metrics import _gc_pause
from ron_metrics.exporters.prometheus.render import Format, Rendered

__all__ = ["ScrapeCoalescer"]


@dataclass
class _Flight:
    families: asyncio.Future[Any]
    renders: dict[tuple[Format, bool], asyncio.Future[Rendered]] = field(
        default_factory=dict
    )
    # Scrapes using this collection now; the last one out ends the GC pause.
    users: int = 0
    ended: bool = False


class ScrapeCoalescer:
    """
    Shares one collection among concurrent scrapes.

    Args:
        collect: Blocking call that collects once (a snapshot ``render`` reads).
        render: Blocking call that renders a snapshot: format, gzip or not.
        executor: Where collection and rendering run.
        protobuf: ``render`` writes the protobuf exposition too.
    """

    def __init__(
        self,
        collect: Callable[[], Any],
        render: Callable[[Any, Format, bool], Rendered],
        executor: concurrent.futures.Executor,
        *,
        protobuf: bool = False,
    ) -> None:
        #: ``render`` writes the protobuf exposition too.
        self.protobuf = protobuf
        self._collect = collect
        self._render = render
        self._executor = executor
        self._flight: _Flight | None = None

    async def get(self, fmt: Format, *, gzip_ok: bool) -> Rendered:
        """
        Return the rendered body, joining the in-flight collection if there is one.

        Raises:
            ResponseTooLargeError: If the body is over the bound.
        """
        loop = asyncio.get_running_loop()
        flight = self._flight
        if flight is None:
            _gc_pause.hold()
            try:
                families = loop.run_in_executor(self._executor, self._collect)
            except BaseException:
                _gc_pause.release()
                raise
            flight = _Flight(families=families)
            self._flight = flight
            families.add_done_callback(lambda _: self._land(flight))
        flight.users += 1
        try:
            collected = await asyncio.shield(flight.families)
            key = (fmt, gzip_ok)
            rendering = flight.renders.get(key)
            if rendering is None:
                rendering = loop.run_in_executor(
                    self._executor,
                    lambda: self._render(collected, fmt, gzip_ok),
                )
                flight.renders[key] = rendering
            return await asyncio.shield(rendering)
        finally:
            flight.users -= 1
            if flight.users == 0 and self._flight is not flight:
                # Landed and nobody left to render it: its objects can go.
                self._end(flight)

    def _land(self, flight: _Flight) -> None:
        # The next scrape after a collection lands starts a fresh one, so data is
        # never older than the request.
        if self._flight is flight:
            self._flight = None
        if flight.users == 0:
            self._end(flight)

    @staticmethod
    def _end(flight: _Flight) -> None:
        if not flight.ended:
            flight.ended = True
            _gc_pause.release()
