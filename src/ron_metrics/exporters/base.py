"""
The sink contract: what the runtime needs from an exporter, and nothing more.

A sink is one way metrics leave the process (the Prometheus exposer, the OTLP
push). The runtime starts, supervises, switches and stops sinks only through this
protocol, so adding a sink never touches the runtime, the switch or the supervisor.

Life of a sink: ``start`` → ``prove`` (evidence it works: serving, or one export
accepted) → adopted (its ``readiness_check`` joins ``/readyz``) → ``alive`` polled
by the supervisor, ``restart`` after a crash → ``stop(deadline, flush=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ron_metrics.config.model import ExporterConfig

__all__ = ["Sink", "SinkKind"]


class Sink(Protocol):
    """
    One running exporter.
    """

    @property
    def name(self) -> str:
        """
        The sink's kind (``prometheus``, ``otlp``): its readiness check name and its
        ``service`` label in ``service_restarts_total``.
        """
        ...

    async def start(self) -> None:
        """
        Begin serving or exporting; raise (``ExposerError``, ``ConfigError``) if it cannot.
        """
        ...

    async def prove(self, deadline: float) -> None:
        """
        Wait until the sink has shown it works, by ``deadline`` (``time.monotonic()``).

        Raises:
            ExporterError: If no evidence arrived in time.
        """
        ...

    def alive(self) -> bool:
        """
        False once the sink's worker (server task, export thread) has died.
        """
        ...

    async def restart(self) -> None:
        """
        Bring a dead sink back with the same settings.
        """
        ...

    async def stop(self, deadline: float, *, flush: bool = True) -> None:
        """
        Stop by ``deadline``; ``flush`` lets a push sink send what it has first.
        """
        ...

    def readiness_check(self) -> str | None:
        """
        ``None`` when ready, else a short degraded reason; fast and non-blocking.
        """
        ...

    def describe(self) -> Mapping[str, str]:
        """
        Where the sink sends or serves, for log lines (never a secret).
        """
        ...


@dataclass(frozen=True, slots=True)
class SinkKind:
    """
    How to make the sinks of one kind from the exporter configuration.

    Attributes:
        name: The kind, as in :attr:`Sink.name`.
        settings: The section this kind reads, or ``None`` when the config does not
            want this kind; a reload replaces the sink only when this value changes.
        build: Make a sink from those settings. ``predecessor`` is the running sink
            of this kind that the new one will replace, so it can take over what
            must not be rebuilt (a bound listener, for instance).
    """

    name: str
    settings: Callable[[ExporterConfig], Any | None]
    build: Callable[[Any, Sink | None], Sink]
