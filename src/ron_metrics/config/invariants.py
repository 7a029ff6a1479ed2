"""
Rules that span several keys of one configuration section.

Each check takes a built section and its key-path prefix and returns the problems it finds;
:mod:`ron_metrics.config.parsing` runs it as soon as that section is built.
"""

from __future__ import annotations

from ron_metrics.config.model import (
    CardinalityConfig,
    ExporterConfig,
    InstrumentRule,
    LabelsConfig,
    OtlpConfig,
    PrometheusConfig,
    ServiceConfig,
)
from ron_metrics.errors import ConfigProblem
from ron_metrics.labels import (
    check_label_key,
    check_label_value,
    prometheus_label_name,
)

__all__ = [
    "check_cardinality",
    "check_exporter",
    "check_labels",
    "check_otlp",
    "check_prometheus",
    "check_service",
]


def check_service(service: ServiceConfig, path: str) -> list[ConfigProblem]:
    return [
        ConfigProblem(f"{path}{key}", why)
        for key in ("name", "instance", "build_version")
        if (value := getattr(service, key)) is not None
        and (why := check_label_value(value))
    ]


def check_labels(labels: LabelsConfig, path: str) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    allowed = labels.allowed_extra
    seen: dict[str, str] = {}
    for key in labels.extra:
        rendered = prometheus_label_name(key)
        if rendered in seen:
            problems.append(
                ConfigProblem(
                    f"{path}extra.{key}",
                    f"renders as the Prometheus label {rendered!r}, like"
                    f" {seen[rendered]!r}; keep one of them",
                )
            )
        seen.setdefault(rendered, key)
    for key, value in labels.extra.items():
        label_path = f"{path}extra.{key}"
        if why := check_label_key(key):
            problems.append(ConfigProblem(label_path, why))
        elif key not in allowed:
            problems.append(
                ConfigProblem(
                    label_path,
                    f"not in labels.allowed_extra ({', '.join(allowed) or 'empty'});"
                    " extra labels must be allowlisted and low-cardinality",
                )
            )
        if why := check_label_value(value):
            problems.append(ConfigProblem(label_path, why))
    return problems


def check_prometheus(prometheus: PrometheusConfig, path: str) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    if not prometheus.bind.is_loopback and not prometheus.allow_public_bind:
        problems.append(
            ConfigProblem(
                f"{path}bind",
                f"{prometheus.bind} is not a loopback address; set"
                f" {path}allow_public_bind = true to expose it on purpose",
            )
        )
    tls = prometheus.tls
    if (tls.cert is None) != (tls.key is None):
        problems.append(
            ConfigProblem(f"{path}tls", "'cert' and 'key' must be set together")
        )
    if tls.client_ca is not None and not tls.enabled:
        problems.append(
            ConfigProblem(f"{path}tls.client_ca", "needs 'cert' and 'key' too")
        )
    if tls.enabled and prometheus.bind.is_unix:
        problems.append(
            ConfigProblem(f"{path}tls", "TLS is for TCP binds, not Unix sockets")
        )
    return problems


def check_exporter(exporter: ExporterConfig, path: str) -> list[ConfigProblem]:
    # OTLP keys are type-checked always, but judged together only when an OTLP
    # sink will run: with kind = "prometheus" nothing exports over OTLP.
    if not exporter.otlp_enabled:
        return []
    return check_otlp(exporter.otlp, f"{path}otlp.")


def check_otlp(otlp: OtlpConfig, path: str) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    if otlp.timeout > otlp.interval:
        problems.append(
            ConfigProblem(f"{path}timeout", f"must not exceed {path}interval")
        )
    endpoint = otlp.endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        problems.append(
            ConfigProblem(f"{path}endpoint", "must start with http:// or https://")
        )
    elif endpoint and otlp.protocol == "grpc" and "@" in endpoint.split("/")[2]:
        # gRPC has no URL credentials: the exporter would dial "user:password@host"
        # as a host name, and print it in its errors.
        problems.append(
            ConfigProblem(
                f"{path}endpoint",
                "a gRPC endpoint takes no user name or password; send credentials"
                " in 'headers'",
            )
        )
    if (otlp.client_cert is None) != (otlp.client_key is None):
        problems.append(
            ConfigProblem(
                f"{path}client_cert", "'client_cert' and 'client_key' go together"
            )
        )
    elif otlp.client_cert is not None and not otlp.resolved_endpoint.startswith(
        "https://"
    ):
        problems.append(
            ConfigProblem(
                f"{path}client_cert",
                "a client certificate needs an https:// endpoint (mTLS is TLS)",
            )
        )
    return problems


def _aggregation_of(rule: InstrumentRule, cardinality: CardinalityConfig) -> str:
    return rule.aggregation or cardinality.histogram_aggregation


def check_cardinality(cardinality: CardinalityConfig, path: str) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for rule in cardinality.instruments:
        at = f'{path}instruments."{rule.pattern}".'
        exponential = _aggregation_of(rule, cardinality) == "exponential"
        if exponential and rule.buckets is not None:
            problems.append(
                ConfigProblem(
                    f"{at}buckets",
                    "an exponential histogram places its buckets itself; set"
                    " aggregation = 'explicit' to use these boundaries",
                )
            )
        for key in ("max_size", "max_scale"):
            if not exponential and getattr(rule, key) is not None:
                problems.append(
                    ConfigProblem(
                        f"{at}{key}",
                        "applies to exponential histograms only; set"
                        " aggregation = 'exponential' too",
                    )
                )
    return problems


# Rules that span several keys of one section; run as soon as the section is built,
# so a broken section elsewhere does not hide these problems.
