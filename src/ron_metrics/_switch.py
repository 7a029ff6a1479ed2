"""
The running sinks, and the one make-before-break switch between sink settings.

A switch builds a candidate for every kind whose settings changed, starts it and
waits for its proof; only when every candidate has proved itself are they swapped
in (their readiness checks replace the old ones) and the old sinks retired with a
final flush. If any candidate fails, all candidates are torn down and the running
sinks are untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ron_metrics.config.model import ExporterConfig
from ron_metrics.errors import ConfigError, ExporterError
from ron_metrics.exporters.base import Sink, SinkKind
from ron_metrics.health import HealthRegistry

__all__ = ["SinkSet"]

# What a candidate that failed may still take to stop.
CANDIDATE_STOP_S = 1.0


def _remaining(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


@dataclass(slots=True)
class _Running:
    sink: Sink
    settings: Any


class SinkSet:
    """
    The sinks of each configured kind; one lock serialises every change to them.
    """

    def __init__(self, kinds: Sequence[SinkKind], health: HealthRegistry) -> None:
        self._kinds = tuple(kinds)
        self._health = health
        self._running: dict[str, _Running] = {}
        self.lock = asyncio.Lock()

    def get(self, name: str) -> Sink | None:
        """
        The running sink of kind ``name``, if any.
        """
        running = self._running.get(name)
        return running.sink if running is not None else None

    def sinks(self) -> tuple[Sink, ...]:
        """
        Every running sink, in kind order.
        """
        return tuple(entry.sink for entry in self._running.values())

    async def start(self, exporter: ExporterConfig, deadline: float) -> None:
        """
        Start every kind the config wants (first start: adopted without a proof).
        """
        for kind in self._kinds:
            settings = kind.settings(exporter)
            if settings is None:
                continue
            sink = kind.build(settings, None)
            await asyncio.wait_for(sink.start(), _remaining(deadline))
            self._adopt(kind.name, _Running(sink, settings))

    async def switch(self, exporter: ExporterConfig, deadline: float) -> None:
        """
        Move to ``exporter``'s sinks make-before-break; call with :attr:`lock` held.

        Raises:
            ExporterError: If a candidate did not start or prove itself by ``deadline``.
            ConfigError: If a candidate's settings are unusable (e.g. unsafe TLS files).
        """
        candidates: dict[str, _Running] = {}
        try:
            for kind in self._kinds:
                settings = kind.settings(exporter)
                current = self._running.get(kind.name)
                if settings is None or (current and current.settings == settings):
                    continue
                sink = kind.build(settings, current.sink if current else None)
                candidates[kind.name] = _Running(sink, settings)
                await _start_and_prove(sink, deadline)
        except BaseException:
            for candidate in candidates.values():
                await candidate.sink.stop(
                    time.monotonic() + CANDIDATE_STOP_S, flush=False
                )
            raise
        retiring: list[Sink] = []
        for kind in self._kinds:
            old = self._running.get(kind.name)
            if kind.name in candidates:
                self._adopt(kind.name, candidates[kind.name])
            elif kind.settings(exporter) is None and old is not None:
                del self._running[kind.name]
                self._health.remove(kind.name)
            else:
                continue
            if old is not None:
                retiring.append(old.sink)
        for sink in retiring:
            await sink.stop(deadline)

    async def stop(self, deadline: float) -> None:
        """
        Stop every sink (push sinks flush once more).

        They stay listed, so what they describe (the address) stays readable.
        """
        for entry in self._running.values():
            await entry.sink.stop(deadline)

    def forget_health(self) -> None:
        """
        Remove the readiness checks of every kind (the sinks are left as they are).
        """
        for kind in self._kinds:
            self._health.remove(kind.name)

    def _adopt(self, name: str, entry: _Running) -> None:
        self._running[name] = entry
        self._health.add_check(name, entry.sink.readiness_check)


async def _start_and_prove(sink: Sink, deadline: float) -> None:
    try:
        await asyncio.wait_for(sink.start(), _remaining(deadline))
        await sink.prove(deadline)
    except (ExporterError, ConfigError):
        raise
    except Exception as exc:
        raise ExporterError(f"the new {sink.name} sink did not start: {exc!r}") from exc
