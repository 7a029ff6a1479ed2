"""
The Prometheus sink of a group member: serve the group's totals while holding the lease.

Every member runs one; only the member holding the serving lease runs an exposer
(bound to the configured address, showing the group's totals). The others poll
for the lease, so when the serving process exits another one binds the port
within a few tenths of a second. A member that does not serve is ready: there is
nothing for it to do until it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping

from ron_metrics.config.model import PrometheusConfig
from ron_metrics.errors import ExposerError
from ron_metrics.exporters.prometheus.listener import Listener
from ron_metrics.exporters.prometheus.server import PrometheusSink
from ron_metrics.logs import RateLimitedLog, log_event
from ron_metrics.multiprocess.group import Group

__all__ = ["GroupExposer"]

_log = logging.getLogger("ron_metrics.multiprocess")
LEASE_POLL_S = 0.1


class Lease:
    """
    How many of this process's group exposers use the serving lease.

    A replacement exposer (a reload) and the one it replaces share it; the lease is
    given up only when the last one stops.
    """

    def __init__(self, group: Group) -> None:
        self._group = group
        self._users = 0

    @property
    def directory(self) -> str:
        """The group's directory."""
        return str(self._group.directory)

    def publish(self) -> None:
        """This member's own published values (its CPU time), at every poll."""
        self._group.publish()

    def take(self) -> bool:
        if not self._group.try_lead():
            return False
        self._users += 1
        return True

    def give_back(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            self._group.step_down()


class GroupExposer:
    """
    A :class:`~ron_metrics.exporters.base.Sink`: the exposer, while this process leads.
    """

    name = "prometheus"

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        lease: Lease,
        build: Callable[[Listener | None], PrometheusSink],
        listener: Listener | None = None,
    ) -> None:
        self.config = config
        self._lease = lease
        self._build = build
        self._listener = listener  # a predecessor's, for the first exposer only
        self._exposer: PrometheusSink | None = None
        self._leading = False
        self._task: asyncio.Task[None] | None = None
        self._audit = RateLimitedLog(_log)

    def share_listener(self, config: PrometheusConfig) -> Listener | None:
        """
        The running exposer's listener for a successor binding the same address.
        """
        if self._exposer is None:
            return None
        return self._exposer.share_listener(config)

    async def start(self) -> None:
        """
        Try to lead at once, then keep trying in the background.
        """
        await self._try_lead()
        self._task = asyncio.get_running_loop().create_task(
            self._watch(), name="ron-metrics-group-lease"
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(LEASE_POLL_S)
            self._lease.publish()
            await self._try_lead()

    async def _try_lead(self) -> None:
        if self._exposer is not None:
            return
        if not self._leading:
            self._leading = self._lease.take()
        if not self._leading:
            return
        exposer = self._build(self._listener)
        self._listener = None
        try:
            await exposer.start()
        except ExposerError as exc:
            # The port may still be held (a previous leader's socket closing, or
            # another program): keep the lease and try again at the next poll.
            self._audit.log(logging.WARNING, "group_bind_failed", error=str(exc))
            return
        self._exposer = exposer
        log_event(
            _log,
            logging.INFO,
            "group_serving",
            address=exposer.address,
            pid=os.getpid(),
        )

    async def prove(self, deadline: float) -> None:
        """
        A serving member proves its exposer; a waiting member has nothing to prove.
        """
        if self._exposer is not None:
            await self._exposer.prove(deadline)

    def alive(self) -> bool:
        """
        True while the lease watcher runs and the exposer (if leading) serves.
        """
        watching = self._task is not None and not self._task.done()
        return watching and (self._exposer is None or self._exposer.alive())

    async def restart(self) -> None:
        """
        Bring back a dead exposer or lease watcher.
        """
        if self._exposer is not None and not self._exposer.alive():
            await self._exposer.restart()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self, deadline: float, *, flush: bool = True) -> None:
        """
        Stop watching, stop the exposer, give the lease back (if no successor uses it).
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._exposer is not None:
            await self._exposer.stop(deadline)
        if self._listener is not None:
            self._listener.release()
            self._listener = None
        if self._leading:
            self._leading = False
            self._lease.give_back()

    def readiness_check(self) -> str | None:
        """
        The exposer's verdict while leading; ``None`` while waiting.
        """
        return self._exposer.readiness_check() if self._exposer is not None else None

    def describe(self) -> Mapping[str, str]:
        """
        The address while serving; the group directory while waiting.
        """
        if self._exposer is not None:
            return self._exposer.describe()
        return {"group": str(self._lease.directory)}
