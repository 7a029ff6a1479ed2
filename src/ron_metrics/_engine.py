"""
What runs on the sinks' event loop: the sinks, their supervisor, and reloads.

The runtime owns the state machine and the loop; this owns everything that must
happen *on* that loop. Sinks are reached only through the sink contract, so this
module knows no sink by type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ron_metrics._supervision import Supervisor
from ron_metrics._switch import SinkSet
from ron_metrics.bus import Bus, ConfigUpdated, ExporterSwitched
from ron_metrics.config.diff import changed_keys, refuse_restart_keys
from ron_metrics.config.model import Config
from ron_metrics.errors import ConfigError, ExporterError, LifecycleError
from ron_metrics.exporters.base import Sink, SinkKind
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthRegistry
from ron_metrics.logs import log_event

__all__ = ["SinkEngine"]

_log = logging.getLogger("ron_metrics.runtime")
SWITCHING = "switching"


class SinkEngine:
    """
    The running sinks of one runtime, their supervision and live reconfiguration.
    """

    def __init__(
        self,
        config: Config,
        kinds: Sequence[SinkKind],
        *,
        health: HealthRegistry,
        bus: Bus,
        self_metrics: SelfMetrics,
    ) -> None:
        self.config = config
        self._health = health
        self._bus = bus
        self._self_metrics = self_metrics
        self._sinks = SinkSet(kinds, health)
        self._supervisor = Supervisor(self._sinks, on_restart=self._count_restart)
        self.accepting_reloads = False

    def address(self) -> str | None:
        """
        The first running sink's address (the exposer's), if any.
        """
        for sink in self._sinks.sinks():
            if address := sink.describe().get("address"):
                return address
        return None

    def sink(self, name: str) -> Sink | None:
        """
        The running sink of kind ``name`` (for measurements that need its internals).
        """
        return self._sinks.get(name)

    def forget_health(self) -> None:
        """
        Drop the readiness checks of this engine's sinks (a forked child's new
        engine registers its own).
        """
        self._sinks.forget_health()

    def _count_restart(self, name: str) -> None:
        self._self_metrics.service_restarts.add(1, {"service": name})

    async def start(self, deadline: float) -> None:
        """
        Start the configured sinks and their supervisor.
        """
        async with self._sinks.lock:
            await self._sinks.start(self.config.exporter, deadline)
        self._supervisor.start()
        self.accepting_reloads = True

    async def stop(self, deadline: float) -> None:
        """
        Keep answering "not ready" for ``drain_delay``, then stop every sink by ``deadline``.
        """
        self.accepting_reloads = False
        exporter = self.config.exporter
        if exporter.prometheus_enabled and exporter.prometheus.drain_delay > 0:
            # Orchestrators and load balancers see the 503 /readyz before the
            # listener goes away.
            delay = min(
                exporter.prometheus.drain_delay, deadline - time.monotonic() - 0.5
            )
            await asyncio.sleep(max(0.0, delay))
        await self._supervisor.stop()
        async with self._sinks.lock:
            await self._sinks.stop(deadline)

    async def reload(self, new_config: Config, timeout: float) -> tuple[str, ...]:
        """
        Apply ``new_config``; see :meth:`ron_metrics.Runtime.reload` for the contract.
        """
        async with self._sinks.lock:
            if not self.accepting_reloads:
                raise LifecycleError("cannot reload a runtime that is not running")
            old = self.config
            changed = changed_keys(old, new_config)
            if not changed:
                return ()
            try:
                refuse_restart_keys(changed)
                self._health.set(SWITCHING, ok=False, detail=SWITCHING)
                try:
                    deadline = time.monotonic() + timeout
                    await self._sinks.switch(new_config.exporter, deadline)
                finally:
                    self._health.remove(SWITCHING)
            except (ConfigError, ExporterError) as exc:
                self._self_metrics.reload_failures.add(1)
                log_event(
                    _log,
                    logging.ERROR,
                    "reload_failed",
                    changed=list(changed),
                    error=str(exc),
                )
                raise
            self.config = new_config
        self._announce(old, new_config, changed)
        return changed

    def _announce(self, old: Config, new: Config, changed: tuple[str, ...]) -> None:
        self._bus.publish(ConfigUpdated(old.digest, new.digest, changed))
        if old.exporter.kind != new.exporter.kind:
            self._bus.publish(ExporterSwitched(old.exporter.kind, new.exporter.kind))
        log_event(
            _log,
            logging.INFO,
            "reloaded",
            changed=list(changed),
            old_digest=old.digest,
            new_digest=new.digest,
            address=self.address(),
        )
