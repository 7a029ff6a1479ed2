"""
The validated configuration and its one loader, :func:`load_config`.

Modules import one way: ``loader`` → ``sources``/``environment``/``declarative``
and ``parsing`` → ``invariants`` → ``model`` → ``process_model`` →
``options``/``values``.
"""

from __future__ import annotations

from ron_metrics.config.loader import load_config
from ron_metrics.config.model import (
    SECRET_MASK,
    CardinalityConfig,
    Config,
    ExporterConfig,
    InstrumentRule,
    LabelsConfig,
    MultiprocessConfig,
    OtlpConfig,
    PrometheusConfig,
    RuntimeMetricsConfig,
    SdkConfig,
    ServiceConfig,
    TlsConfig,
)
from ron_metrics.config.values import BindAddress

__all__ = [
    "SECRET_MASK",
    "BindAddress",
    "CardinalityConfig",
    "Config",
    "ExporterConfig",
    "InstrumentRule",
    "LabelsConfig",
    "MultiprocessConfig",
    "OtlpConfig",
    "PrometheusConfig",
    "RuntimeMetricsConfig",
    "SdkConfig",
    "ServiceConfig",
    "TlsConfig",
    "load_config",
]
