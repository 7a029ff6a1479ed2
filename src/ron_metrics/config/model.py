"""
The configuration model: frozen dataclasses, one per TOML section.

Each field's metadata says how its value is parsed (``parse``), whether it is a
secret (masked in ``repr``, :meth:`Config.to_dict` and errors), and whether a
reload may change it (``restart``). Rules spanning several keys live in
:mod:`ron_metrics.config.invariants`; building from raw data in
:mod:`ron_metrics.config.parsing`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import blake3

from ron_metrics.config import values as v
from ron_metrics.config.options import opt as _opt
from ron_metrics.config.plain import SECRET_MASK, as_plain, mask_userinfo
from ron_metrics.config.process_model import (
    EXEMPLAR_FILTERS,
    GAUGE_POLICIES,
    RUNTIME_METRIC_GROUPS,
    MultiprocessConfig,
    RuntimeMetricsConfig,
    SdkConfig,
)
from ron_metrics.config.values import BindAddress

__all__ = [
    "EXEMPLAR_FILTERS",
    "EXPORTER_KINDS",
    "GAUGE_POLICIES",
    "HISTOGRAM_AGGREGATIONS",
    "HISTOGRAM_AGGREGATION_NAMES",
    "OTLP_METRICS_PATH",
    "RUNTIME_METRIC_GROUPS",
    "SECRET_MASK",
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
]


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """
    ``[service]``: who is reporting.
    """

    name: str = field(metadata=_opt(v.parse_str))
    instance: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    build_version: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    amnesia: bool = field(default=False, metadata=_opt(v.parse_bool))
    self_metrics_prefix: str = field(default="", metadata=_opt(v.parse_name_prefix))


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelsConfig:
    """
    ``[labels]``: allowlisted, low-cardinality extra static labels.
    """

    extra: Mapping[str, str] = field(
        default_factory=_empty_mapping, metadata=_opt(v.parse_str_mapping)
    )
    allowed_extra: tuple[str, ...] = field(
        default=("region", "az", "tier"), metadata=_opt(v.parse_name_list)
    )


HISTOGRAM_AGGREGATIONS = ("explicit", "exponential")
# OpenTelemetry's names for them (environment variable, declarative file).
HISTOGRAM_AGGREGATION_NAMES = {
    "explicit_bucket_histogram": "explicit",
    "base2_exponential_bucket_histogram": "exponential",
}
# The OpenTelemetry SDK's defaults for base-2 exponential histograms. The scale stays
# within what a Prometheus native histogram can carry after downscaling (-4 … 8 there;
# finer scales are downscaled to 8 when exposed).
EXPONENTIAL_MAX_SIZE = 160
EXPONENTIAL_MAX_SCALE = 20
_parse_max_size = v.parse_int_between(2, 16384)
_parse_max_scale = v.parse_int_between(-4, 20)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentRule:
    """
    ``[cardinality.instruments."NAME or glob"]``: one instrument's attribute policy.
    """

    pattern: str = field(default="", metadata={"internal": True})
    attributes: tuple[str, ...] | None = field(
        default=None, metadata=_opt(v.parse_name_list)
    )
    drop: bool = field(default=False, metadata=_opt(v.parse_bool))
    max_series: int | None = field(default=None, metadata=_opt(v.parse_positive_int))
    buckets: tuple[float, ...] | None = field(
        default=None, metadata=_opt(v.parse_buckets)
    )
    aggregation: str | None = field(
        default=None, metadata=_opt(v.parse_choice(*HISTOGRAM_AGGREGATIONS))
    )
    max_size: int | None = field(default=None, metadata=_opt(_parse_max_size))
    max_scale: int | None = field(default=None, metadata=_opt(_parse_max_scale))


@dataclass(frozen=True, slots=True, kw_only=True)
class CardinalityConfig:
    """
    ``[cardinality]``: attribute allowlists and the per-instrument series bound.

    ``default_attributes = None`` keeps every attribute (still bounded by
    ``max_series``); a list keeps only those attributes.
    """

    default_attributes: tuple[str, ...] | None = field(
        default=None, metadata=_opt(v.parse_name_list)
    )
    max_series: int = field(default=2000, metadata=_opt(v.parse_positive_int))
    histogram_aggregation: str = field(
        default="explicit",
        metadata=_opt(v.parse_choice(*HISTOGRAM_AGGREGATIONS)),
    )
    histogram_max_size: int = field(
        default=EXPONENTIAL_MAX_SIZE, metadata=_opt(_parse_max_size)
    )
    histogram_max_scale: int = field(
        default=EXPONENTIAL_MAX_SCALE, metadata=_opt(_parse_max_scale)
    )
    instruments: tuple[InstrumentRule, ...] = field(
        default=(), metadata={"rules": InstrumentRule}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """
    ``[exporter.prometheus.tls]``: serve /metrics over TLS (mutual when ``client_ca``).
    """

    cert: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    key: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    client_ca: str | None = field(default=None, metadata=_opt(v.parse_optional_str))

    @property
    def enabled(self) -> bool:
        """
        True when a certificate and key are configured.
        """
        return self.cert is not None and self.key is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    """
    ``[exporter.prometheus]``: the pull exposer.
    """

    bind: BindAddress = field(
        default=BindAddress(host="127.0.0.1", port=0), metadata=_opt(v.parse_bind)
    )
    allow_public_bind: bool = field(default=False, metadata=_opt(v.parse_bool))
    read_timeout: float = field(default=2.0, metadata=_opt(v.parse_duration))
    write_timeout: float = field(default=2.0, metadata=_opt(v.parse_duration))
    idle_timeout: float = field(default=15.0, metadata=_opt(v.parse_duration))
    scrape_timeout: float = field(default=10.0, metadata=_opt(v.parse_duration))
    drain_delay: float = field(default=0.0, metadata=_opt(v.parse_delay))
    max_header_bytes: int = field(default=8192, metadata=_opt(v.parse_positive_int))
    max_in_flight: int = field(default=256, metadata=_opt(v.parse_positive_int))
    max_connections: int = field(default=512, metadata=_opt(v.parse_positive_int))
    max_response_bytes: int = field(
        default=64 * 1024 * 1024, metadata=_opt(v.parse_positive_int)
    )
    max_pending_bytes: int = field(
        default=256 * 1024 * 1024, metadata=_opt(v.parse_positive_int)
    )
    gzip: bool = field(default=True, metadata=_opt(v.parse_bool))
    encoder: str = field(
        default="direct", metadata=_opt(v.parse_choice("direct", "reference"))
    )
    target_info: bool = field(default=True, metadata=_opt(v.parse_bool, restart=True))
    scope_labels: bool = field(default=False, metadata=_opt(v.parse_bool, restart=True))
    tls: TlsConfig = field(default=TlsConfig(), metadata={"section": TlsConfig})


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpConfig:
    """
    ``[exporter.otlp]``: push to an OpenTelemetry Collector.

    ``endpoint = None`` means the protocol's default on localhost.
    """

    endpoint: str | None = field(
        default=None, metadata=_opt(v.parse_optional_str, url=True)
    )
    protocol: str = field(
        default="grpc", metadata=_opt(v.parse_choice("grpc", "http/protobuf"))
    )
    interval: float = field(default=10.0, metadata=_opt(v.parse_duration))
    timeout: float = field(default=5.0, metadata=_opt(v.parse_duration))
    headers: Mapping[str, str] = field(
        default_factory=_empty_mapping, metadata=_opt(v.parse_str_mapping, secret=True)
    )
    compression: str = field(
        default="none", metadata=_opt(v.parse_choice("none", "gzip", "deflate"))
    )
    ca_file: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    client_cert: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    client_key: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    temporality: str = field(
        default="cumulative",
        metadata=_opt(v.parse_choice("cumulative", "delta", "lowmemory")),
    )
    failure_threshold: int = field(default=3, metadata=_opt(v.parse_positive_int))

    def __repr__(self) -> str:
        # Every field as the dataclass would show it, header values masked.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["headers"] = dict.fromkeys(self.headers, SECRET_MASK)
        if self.endpoint:
            shown["endpoint"] = mask_userinfo(self.endpoint)
        return f"OtlpConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def resolved_endpoint(self) -> str:
        """
        The endpoint to dial: the configured one or the protocol's local default.

        Over ``http/protobuf`` an endpoint with an empty path gets ``/v1/metrics``
        (the OTLP path for metrics); any other path is used as it is.
        """
        if not self.endpoint:
            if self.protocol == "grpc":
                return "http://localhost:4317"
            return "http://localhost:4318/v1/metrics"
        if self.protocol == "http/protobuf":
            parts = urllib.parse.urlsplit(self.endpoint)
            if parts.path in {"", "/"}:
                return urllib.parse.urlunsplit(parts._replace(path=OTLP_METRICS_PATH))
        return self.endpoint

    @property
    def shown_endpoint(self) -> str:
        """:attr:`resolved_endpoint` as logs and messages show it (password masked)."""
        return mask_userinfo(self.resolved_endpoint)


OTLP_METRICS_PATH = "/v1/metrics"
EXPORTER_KINDS = ("prometheus", "otlp", "both", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExporterConfig:
    """
    ``[exporter]``: which sinks read the one metric reader.
    """

    kind: str = field(
        default="prometheus", metadata=_opt(v.parse_choice(*EXPORTER_KINDS))
    )
    prometheus: PrometheusConfig = field(
        default=PrometheusConfig(), metadata={"section": PrometheusConfig}
    )
    otlp: OtlpConfig = field(default=OtlpConfig(), metadata={"section": OtlpConfig})

    @property
    def prometheus_enabled(self) -> bool:
        """
        True when the Prometheus exposer runs.
        """
        return self.kind in {"prometheus", "both"}

    @property
    def otlp_enabled(self) -> bool:
        """
        True when the OTLP push sink runs.
        """
        return self.kind in {"otlp", "both"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """
    The whole, validated, immutable configuration. Build it with :func:`load_config`.
    """

    service: ServiceConfig = field(metadata={"section": ServiceConfig, "restart": True})
    labels: LabelsConfig = field(
        default=LabelsConfig(), metadata={"section": LabelsConfig, "restart": True}
    )
    cardinality: CardinalityConfig = field(
        default=CardinalityConfig(),
        metadata={"section": CardinalityConfig, "restart": True},
    )
    exporter: ExporterConfig = field(
        default=ExporterConfig(), metadata={"section": ExporterConfig}
    )
    sdk: SdkConfig = field(
        default=SdkConfig(), metadata={"section": SdkConfig, "restart": True}
    )
    multiprocess: MultiprocessConfig = field(
        default=MultiprocessConfig(),
        metadata={"section": MultiprocessConfig, "restart": True},
    )
    runtime_metrics: RuntimeMetricsConfig = field(
        default=RuntimeMetricsConfig(),
        metadata={"section": RuntimeMetricsConfig, "restart": True},
    )

    def to_dict(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """
        The effective configuration as plain data (secrets masked unless asked).
        """
        plain: dict[str, Any] = as_plain(self, reveal_secrets=reveal_secrets)
        return plain

    @property
    def digest(self) -> str:
        """
        BLAKE3 hex digest of the effective configuration (stable across key order).
        """
        canonical = json.dumps(self.to_dict(reveal_secrets=True), sort_keys=True)
        return blake3.blake3(canonical.encode()).hexdigest()
