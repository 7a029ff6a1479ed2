"""
The sink kinds this package ships, wired to one runtime's hub, metrics and health.

The only place that names sink classes: the runtime, the switch and the
supervisor see :class:`~ron_metrics.exporters.base.SinkKind` and the sink contract.
"""

from __future__ import annotations

from collections.abc import Callable

from ron_metrics._engine import SinkEngine
from ron_metrics.bus import Bus
from ron_metrics.config.model import (
    Config,
    ExporterConfig,
    OtlpConfig,
    PrometheusConfig,
)
from ron_metrics.exporters.base import Sink, SinkKind
from ron_metrics.exporters.otlp import OtlpSink
from ron_metrics.exporters.prometheus.server import PrometheusSink
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.hub import HubReader
from ron_metrics.provider import BuiltProvider

__all__ = ["build_engine", "sink_kinds"]


def _prometheus_settings(exporter: ExporterConfig) -> PrometheusConfig | None:
    return exporter.prometheus if exporter.prometheus_enabled else None


def _otlp_settings(exporter: ExporterConfig) -> OtlpConfig | None:
    return exporter.otlp if exporter.otlp_enabled else None


def sink_kinds(
    *,
    service: str,
    hub: HubReader,
    self_metrics: SelfMetrics,
    readiness: Callable[[], HealthSnapshot],
) -> tuple[SinkKind, ...]:
    """
    The Prometheus exposer and the OTLP push, in start order.
    """

    def prometheus(settings: PrometheusConfig, predecessor: Sink | None) -> Sink:
        # Same address: serve the predecessor's bound socket (no rebind, no gap).
        listener = (
            predecessor.share_listener(settings)
            if isinstance(predecessor, PrometheusSink)
            else None
        )
        return PrometheusSink(
            settings,
            service=service,
            hub=hub,
            self_metrics=self_metrics,
            readiness=readiness,
            listener=listener,
        )

    def otlp(settings: OtlpConfig, predecessor: Sink | None) -> Sink:
        return OtlpSink(settings, hub=hub, self_metrics=self_metrics)

    return (
        SinkKind("prometheus", _prometheus_settings, prometheus),
        SinkKind("otlp", _otlp_settings, otlp),
    )


def build_engine(
    config: Config, built: BuiltProvider, *, health: HealthRegistry, bus: Bus
) -> SinkEngine:
    """
    The sink engine of one runtime, with this package's sink kinds.
    """
    kinds = sink_kinds(
        service=config.service.name,
        hub=built.hub,
        self_metrics=built.self_metrics,
        readiness=health.snapshot,
    )
    return SinkEngine(
        config, kinds, health=health, bus=bus, self_metrics=built.self_metrics
    )
