"""
The sink kinds this package ships, wired to one runtime's hub, metrics and health.

The only place that names sink classes: the runtime, the switch and the
supervisor see :class:`~ron_metrics.exporters.base.SinkKind` and the sink contract.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource

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
from ron_metrics.exporters.prometheus.listener import Listener
from ron_metrics.exporters.prometheus.server import PrometheusSink
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.hub import HubReader
from ron_metrics.multiprocess.group import Group
from ron_metrics.multiprocess.sink import GroupExposer, Lease
from ron_metrics.provider import BuiltProvider, build_resource
from ron_metrics.views import SELF_METER_NAME

__all__ = ["build_engine", "observe_readiness", "sink_kinds"]


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
    group: tuple[Group, Resource] | None = None,
) -> tuple[SinkKind, ...]:
    """
    The Prometheus exposer (a group member's, in a multi-process group) and the
    OTLP push, in start order.
    """
    collect: Callable[[], MetricsData] | None = None
    lease: Lease | None = None
    if group is not None:
        members, resource = group
        lease = Lease(members)

        def collect() -> MetricsData:
            hub.capture()  # our own observable instruments write through first
            return members.collect(resource)

    def exposer(
        settings: PrometheusConfig, listener: Listener | None
    ) -> PrometheusSink:
        return PrometheusSink(
            settings,
            service=service,
            hub=hub,
            self_metrics=self_metrics,
            readiness=readiness,
            listener=listener,
            collect=collect,
        )

    def prometheus(settings: PrometheusConfig, predecessor: Sink | None) -> Sink:
        # Same address: serve the predecessor's bound socket (no rebind, no gap).
        listener = (
            predecessor.share_listener(settings)
            if isinstance(predecessor, (PrometheusSink, GroupExposer))
            else None
        )
        if lease is None:
            return exposer(settings, listener)
        return GroupExposer(
            settings,
            lease=lease,
            build=lambda shared: exposer(settings, shared),
            listener=listener,
        )

    def otlp(settings: OtlpConfig, predecessor: Sink | None) -> Sink:
        return OtlpSink(settings, hub=hub, self_metrics=self_metrics)

    return (
        SinkKind("prometheus", _prometheus_settings, prometheus),
        SinkKind("otlp", _otlp_settings, otlp),
    )


def group_resource(config: Config) -> Resource:
    """
    The resource of a group's totals: the service, one instance for the whole group
    (the configured one, else the host name) rather than the serving process's.
    """
    resource = build_resource(config)
    instance = config.service.instance or socket.gethostname()
    return resource.merge(Resource({"service.instance.id": instance}))


def observe_readiness(
    built: BuiltProvider, health: HealthRegistry, *, prefix: str = ""
) -> None:
    """
    The ``ready`` gauge: 1 when ``/readyz`` would answer 200, else 0 — so alerting
    sees readiness in the same scrape as everything else.
    """

    def ready(_options: CallbackOptions) -> list[Observation]:
        return [Observation(1 if health.snapshot().ready else 0)]

    built.provider.get_meter(SELF_METER_NAME).create_observable_gauge(
        prefix + "ready",
        callbacks=[ready],
        description="1 when every readiness check passes (/readyz answers 200), else 0.",
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
        group=None if built.group is None else (built.group, group_resource(config)),
    )
    return SinkEngine(
        config, kinds, health=health, bus=bus, self_metrics=built.self_metrics
    )
