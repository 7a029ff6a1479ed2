"""
Supervision and the make-before-break switch, driven through the sink contract
with a scripted sink: the runtime's generic parts must not need a real exporter
to be exercised, and must not know one by type.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from ron_metrics import ExporterError
from ron_metrics._supervision import Supervisor
from ron_metrics._switch import SinkSet
from ron_metrics.config.model import ExporterConfig
from ron_metrics.exporters.base import Sink, SinkKind
from ron_metrics.health import HealthRegistry


@dataclass
class ScriptedSink:
    """A sink whose every answer the test decides."""

    label: str
    proves: bool = True
    running: bool = False
    events: list[str] = field(default_factory=list)
    name: str = "scripted"

    async def start(self) -> None:
        self.running = True
        self.events.append(f"start {self.label}")

    async def prove(self, deadline: float) -> None:
        if not self.proves:
            raise ExporterError(f"{self.label} never proved itself")

    def alive(self) -> bool:
        return self.running

    async def restart(self) -> None:
        self.running = True
        self.events.append(f"restart {self.label}")

    async def stop(self, deadline: float, *, flush: bool = True) -> None:
        self.running = False
        self.events.append(f"stop {self.label} flush={flush}")

    def readiness_check(self) -> str | None:
        return None if self.running else f"{self.label} down"

    def describe(self) -> Mapping[str, str]:
        return {"address": self.label}


def _kind(built: list[ScriptedSink], events: list[str]) -> SinkKind:
    def settings(exporter: ExporterConfig) -> Any:
        return exporter.prometheus if exporter.prometheus_enabled else None

    def build(config: Any, predecessor: Sink | None) -> Sink:
        sink = ScriptedSink(label=f"v{len(built)}", proves=config.gzip, events=events)
        built.append(sink)
        return sink

    return SinkKind("scripted", settings, build)


def _exporter(*, gzip: bool = True, kind: str = "prometheus") -> ExporterConfig:
    from ron_metrics.testing import config_for_tests

    return config_for_tests(
        exporter={"kind": kind, "prometheus": {"gzip": gzip}}
    ).exporter


def _with_max_in_flight(exporter: ExporterConfig, value: int) -> ExporterConfig:
    changed = dataclasses.replace(exporter.prometheus, max_in_flight=value)
    return dataclasses.replace(exporter, prometheus=changed)


def _set() -> tuple[SinkSet, HealthRegistry, list[ScriptedSink], list[str]]:
    built: list[ScriptedSink] = []
    events: list[str] = []
    health = HealthRegistry()
    return SinkSet([_kind(built, events)], health), health, built, events


class TestSwitch:
    def test_candidate_proves_then_old_retires_with_a_flush(self) -> None:
        """Make before break: the new sink starts and proves before the old one stops."""

        async def scenario() -> None:
            sinks, health, built, events = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            await sinks.switch(_exporter(gzip=True, kind="both"), time.monotonic() + 30)
            assert events == ["start v0"]  # same settings: nothing replaced
            built[0].running = False
            assert health.snapshot().degraded == ("scripted: v0 down",)
            built[0].running = True
            # A changed setting that proves itself replaces the sink.
            new = _with_max_in_flight(_exporter(), 7)
            await sinks.switch(new, time.monotonic() + 30)
            assert events == ["start v0", "start v1", "stop v0 flush=True"]
            assert sinks.get("scripted") is built[1]
            built[0].running = False  # the retired sink no longer counts
            assert health.snapshot().ready

        asyncio.run(scenario())

    def test_failed_candidate_is_torn_down_and_the_old_sink_stays(self) -> None:
        """A candidate that cannot prove itself is stopped without a flush; nothing else changes."""

        async def scenario() -> None:
            sinks, health, built, events = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            with pytest.raises(ExporterError, match="v1 never proved"):
                await sinks.switch(_exporter(gzip=False), time.monotonic() + 30)
            assert events == ["start v0", "start v1", "stop v1 flush=False"]
            assert sinks.get("scripted") is built[0]
            assert built[0].running
            assert health.snapshot().ready

        asyncio.run(scenario())

    def test_kind_no_longer_wanted_is_retired(self) -> None:
        """Switching to a config without the kind stops it and drops its readiness check."""

        async def scenario() -> None:
            sinks, health, built, events = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            await sinks.switch(_exporter(kind="otlp"), time.monotonic() + 30)
            assert sinks.get("scripted") is None
            assert events[-1] == "stop v0 flush=True"
            built[0].running = False
            assert health.snapshot().ready

        asyncio.run(scenario())


class TestSupervisor:
    def test_dead_sink_is_restarted_and_counted(self) -> None:
        """A sink whose worker died is restarted after the backoff and reported once."""

        async def scenario() -> None:
            sinks, _, built, events = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            restarts: list[str] = []
            supervisor = Supervisor(sinks, on_restart=restarts.append, interval=0.01)
            supervisor.start()
            built[0].running = False
            for _ in range(500):  # bounded: 5 s
                if built[0].running:
                    break
                await asyncio.sleep(0.01)
            await supervisor.stop()
            assert built[0].running
            assert restarts == ["scripted"]
            assert events == ["start v0", "restart v0"]

        asyncio.run(scenario())

    def test_backoff_doubles_and_is_capped(self) -> None:
        """Restarts within a minute back off exponentially up to the cap."""
        supervisor = Supervisor(SinkSet([], HealthRegistry()), on_restart=print)
        delays = [supervisor.backoff("x") for _ in range(9)]
        assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
        assert delays[-1] == 5.0
        assert supervisor.backoff("other") == 0.1

    def test_no_lock_is_held_across_the_backoff(self) -> None:
        """While the supervisor waits to restart, a reload can take the lock at once."""

        async def scenario() -> None:
            sinks, _, built, _ = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            supervisor = Supervisor(sinks, on_restart=lambda _: None, interval=0.01)
            for _ in range(6):
                supervisor.backoff("scripted")  # the next delay is 5 s (the cap)
            supervisor.start()
            built[0].running = False
            await asyncio.sleep(0.1)  # the supervisor is now sleeping its backoff
            # Its timers fire before this one: it has seen the dead sink and is
            # waiting out the 5 s delay, and the lock is free meanwhile.
            held_during_backoff = sinks.lock.locked()
            await supervisor.stop()
            assert not held_during_backoff
            assert not built[0].running  # still in backoff: not restarted yet

        asyncio.run(scenario())

    def test_sink_replaced_during_backoff_is_not_restarted(self) -> None:
        """A reload that replaced the dead sink wins; the supervisor leaves it alone."""

        async def scenario() -> None:
            sinks, _, built, events = _set()
            await sinks.start(_exporter(), time.monotonic() + 30)
            supervisor = Supervisor(sinks, on_restart=lambda _: None, interval=0.01)
            supervisor.start()
            built[0].running = False
            await asyncio.sleep(0.03)  # seen dead; backoff 0.1 s begins
            new = _with_max_in_flight(_exporter(), 9)
            async with sinks.lock:
                await sinks.switch(new, time.monotonic() + 30)
            await asyncio.sleep(0.3)
            await supervisor.stop()
            assert "restart v0" not in events
            assert sinks.get("scripted") is built[1]

        asyncio.run(scenario())
