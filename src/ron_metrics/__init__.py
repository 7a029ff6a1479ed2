"""
ron-metrics: instrument with the OpenTelemetry metrics API; expose to Prometheus
from a hardened exposer or push over OTLP, switched by configuration behind
readiness checks.

Importing this package starts nothing and reads nothing: everything happens in
:func:`load_config` and :func:`start`.
"""

from __future__ import annotations

from ron_metrics.bus import ConfigUpdated, Draining, ExporterSwitched, Subscription
from ron_metrics.config import (
    CardinalityConfig,
    Config,
    ExporterConfig,
    InstrumentRule,
    LabelsConfig,
    OtlpConfig,
    PrometheusConfig,
    ServiceConfig,
    TlsConfig,
    load_config,
)
from ron_metrics.errors import (
    ConfigError,
    ConfigProblem,
    ExporterError,
    ExposerError,
    LifecycleError,
    RonMetricsError,
)
from ron_metrics.fast.bound import bind
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.runtime import Runtime, RuntimeState, start, start_async

__all__ = [
    "CardinalityConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ConfigUpdated",
    "Draining",
    "ExporterConfig",
    "ExporterError",
    "ExporterSwitched",
    "ExposerError",
    "HealthRegistry",
    "HealthSnapshot",
    "InstrumentRule",
    "LabelsConfig",
    "LifecycleError",
    "OtlpConfig",
    "PrometheusConfig",
    "RonMetricsError",
    "Runtime",
    "RuntimeState",
    "ServiceConfig",
    "Subscription",
    "TlsConfig",
    "bind",
    "load_config",
    "start",
    "start_async",
]


def __getattr__(name: str) -> str:
    # Read lazily so importing the package stays free of metadata lookups.
    if name == "__version__":
        from importlib.metadata import version

        return version("ron-metrics")
    raise AttributeError(f"module 'ron_metrics' has no attribute {name!r}")
