"""
The validated configuration and its one loader, :func:`load_config`.

Sources, highest precedence first: keyword overrides, the environment
(``RON_METRICS_*`` over ``OTEL_*``), the TOML file, defaults. Every problem in
every source is collected and raised together as one :class:`ConfigError`, each
naming its key path; an unknown key names its closest valid key.
"""

from __future__ import annotations

import difflib
import json
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import blake3

from ron_metrics import _values as v
from ron_metrics._checks import (
    check_exporter,
    check_labels,
    check_prometheus,
    check_service,
)
from ron_metrics._declarative import declarative_layer
from ron_metrics._env import deep_merge as _deep_merge
from ron_metrics._env import env_layer, ron_layer
from ron_metrics._sources import apply_aliases, read_file
from ron_metrics._values import BindAddress
from ron_metrics.errors import ConfigError, ConfigProblem

__all__ = [
    "CardinalityConfig",
    "Config",
    "ExporterConfig",
    "InstrumentRule",
    "LabelsConfig",
    "OtlpConfig",
    "PrometheusConfig",
    "SdkConfig",
    "ServiceConfig",
    "TlsConfig",
    "load_config",
]


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


SECRET_MASK = "***"  # noqa: S105 - the mask, not a secret


def _opt(parse: Callable[[object], object], *, secret: bool = False) -> dict[str, Any]:
    return {"parse": parse, "secret": secret}


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
    target_info: bool = field(default=True, metadata=_opt(v.parse_bool))
    scope_labels: bool = field(default=False, metadata=_opt(v.parse_bool))
    tls: TlsConfig = field(default=TlsConfig(), metadata={"section": TlsConfig})


@dataclass(frozen=True, slots=True, kw_only=True)
class OtlpConfig:
    """
    ``[exporter.otlp]``: push to an OpenTelemetry Collector.

    ``endpoint = None`` means the protocol's default on localhost.
    """

    endpoint: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
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
        masked = dict.fromkeys(self.headers, SECRET_MASK)
        return (
            f"OtlpConfig(endpoint={self.endpoint!r}, protocol={self.protocol!r}, "
            f"interval={self.interval!r}, timeout={self.timeout!r}, headers={masked!r}, "
            f"compression={self.compression!r}, ca_file={self.ca_file!r}, "
            f"client_cert={self.client_cert!r}, client_key={self.client_key!r}, "
            f"temporality={self.temporality!r}, "
            f"failure_threshold={self.failure_threshold!r})"
        )

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


EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")


@dataclass(frozen=True, slots=True, kw_only=True)
class SdkConfig:
    """
    ``[sdk]``: switches of the OpenTelemetry metrics SDK itself.
    """

    disabled: bool = field(default=False, metadata=_opt(v.parse_bool))
    exemplar_filter: str = field(
        default="trace_based", metadata=_opt(v.parse_choice(*EXEMPLAR_FILTERS))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """
    The whole, validated, immutable configuration. Build it with :func:`load_config`.
    """

    service: ServiceConfig = field(metadata={"section": ServiceConfig})
    labels: LabelsConfig = field(
        default=LabelsConfig(), metadata={"section": LabelsConfig}
    )
    cardinality: CardinalityConfig = field(
        default=CardinalityConfig(), metadata={"section": CardinalityConfig}
    )
    exporter: ExporterConfig = field(
        default=ExporterConfig(), metadata={"section": ExporterConfig}
    )
    sdk: SdkConfig = field(default=SdkConfig(), metadata={"section": SdkConfig})

    def to_dict(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """
        The effective configuration as plain data (secrets masked unless asked).
        """
        plain: dict[str, Any] = _as_plain(self, reveal_secrets=reveal_secrets)
        return plain

    @property
    def digest(self) -> str:
        """
        BLAKE3 hex digest of the effective configuration (stable across key order).
        """
        canonical = json.dumps(self.to_dict(reveal_secrets=True), sort_keys=True)
        return blake3.blake3(canonical.encode()).hexdigest()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Config:
        """
        Validate one already-merged mapping (the TOML shape) into a Config.

        Raises:
            ConfigError: With every problem found.
        """
        problems: list[ConfigProblem] = []
        built = _build_section(cls, raw, "", problems)
        if problems or built is None:
            raise ConfigError(problems)
        return built


def _as_plain(obj: Any, *, reveal_secrets: bool) -> Any:
    if isinstance(obj, BindAddress):
        return str(obj)
    if isinstance(obj, InstrumentRule):
        return {
            f.name: _as_plain(getattr(obj, f.name), reveal_secrets=reveal_secrets)
            for f in fields(obj)
            if f.name != "pattern"
        }
    if is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("rules"):
                out[f.name] = {
                    rule.pattern: _as_plain(rule, reveal_secrets=reveal_secrets)
                    for rule in value
                }
            elif f.metadata.get("secret") and not reveal_secrets:
                out[f.name] = dict.fromkeys(value, SECRET_MASK)
            else:
                out[f.name] = _as_plain(value, reveal_secrets=reveal_secrets)
        return out
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return obj


_T = TypeVar("_T")


def _unknown_key(path: str, key: str, valid: list[str]) -> ConfigProblem:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigProblem(
        f"{path}{key}", f"unknown key{hint} (valid: {', '.join(valid)})"
    )


def _build_section(
    cls: type[_T], raw: object, path: str, problems: list[ConfigProblem]
) -> _T | None:
    where = path.rstrip(".") or "(top level)"
    if not isinstance(raw, Mapping):
        problems.append(
            ConfigProblem(where, f"expected a table, got {v.describe_type(raw)}")
        )
        return None
    specs = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}  # type: ignore[arg-type]  # cls is one of our config dataclasses
    for key in raw:
        if key not in specs:
            problems.append(_unknown_key(path, str(key), sorted(specs)))
    kwargs: dict[str, Any] = {}
    before = len(problems)
    for name, spec in specs.items():
        key_path = f"{path}{name}"
        if name not in raw:
            required = spec.default is MISSING and spec.default_factory is MISSING
            if required and (section := spec.metadata.get("section")):
                # Name the missing leaf keys, not just the absent table.
                _build_section(section, {}, f"{key_path}.", problems)
            elif required:
                problems.append(ConfigProblem(key_path, "is required"))
            continue
        kwargs[name] = _build_field(spec.metadata, raw[name], key_path, problems)
    if len(problems) != before:
        return None
    built = cls(**kwargs)
    if check := _SECTION_CHECKS.get(cls):
        found = check(built, path)
        if found:
            problems.extend(found)
            return None
    return built


def _build_field(
    metadata: Mapping[str, Any],
    value: object,
    key_path: str,
    problems: list[ConfigProblem],
) -> Any:
    if section := metadata.get("section"):
        return _build_section(section, value, f"{key_path}.", problems)
    if rule_cls := metadata.get("rules"):
        return _build_rules(rule_cls, value, key_path, problems)
    try:
        return metadata["parse"](value)
    except v.InvalidValueError as exc:
        problems.append(ConfigProblem(key_path, str(exc)))
        return None


def _build_rules(
    rule_cls: type[InstrumentRule],
    raw: object,
    path: str,
    problems: list[ConfigProblem],
) -> tuple[InstrumentRule, ...]:
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem(path, "expected a table of instrument rules"))
        return ()
    rules: list[InstrumentRule] = []
    for pattern, body in raw.items():
        rule_path = f'{path}."{pattern}"'
        rule = _build_section(rule_cls, body, f"{rule_path}.", problems)
        if rule is None:
            continue
        if rule.drop and (
            rule.attributes is not None
            or rule.max_series is not None
            or rule.buckets is not None
        ):
            problems.append(
                ConfigProblem(
                    rule_path, "'drop = true' cannot be combined with other keys"
                )
            )
        if not rule.drop and (rule.attributes, rule.max_series, rule.buckets) == (
            None,
            None,
            None,
        ):
            problems.append(
                ConfigProblem(
                    rule_path,
                    "needs 'attributes', 'max_series', 'buckets' or 'drop = true'",
                )
            )
        rules.append(_replace_pattern(rule, str(pattern)))
    # Exact names take precedence over globs; among globs, the file order holds.
    rules.sort(key=lambda rule: any(ch in rule.pattern for ch in "*?["))
    return tuple(rules)


def _replace_pattern(rule: InstrumentRule, pattern: str) -> InstrumentRule:
    return InstrumentRule(
        pattern=pattern.lower(),
        attributes=rule.attributes,
        drop=rule.drop,
        max_series=rule.max_series,
        buckets=rule.buckets,
    )


_SECTION_CHECKS: Mapping[type, Callable[[Any, str], list[ConfigProblem]]] = (
    MappingProxyType(
        {
            ServiceConfig: check_service,
            LabelsConfig: check_labels,
            PrometheusConfig: check_prometheus,
            ExporterConfig: check_exporter,
        }
    )
)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Mapping[str, Any],
) -> Config:
    """
    Load, merge and validate the configuration.

    Args:
        path: A TOML file. When ``None``, ``RON_METRICS_CONFIG`` from ``env`` names
            it; when that is unset too, only env, overrides and defaults apply.
        env: The environment to read; ``None`` means ``os.environ``. Pass ``{}`` to
            ignore the environment.
        defaults: A config tree below every other source (e.g. an app's own
            defaults); same shape as the file.
        **overrides: Top-level sections (``service={...}``, ``exporter={...}``);
            they win over every other source.

    Returns:
        The validated, immutable configuration.

    Raises:
        ConfigError: With every problem of every source, each naming its key.
    """
    environ = os.environ if env is None else env
    problems: list[ConfigProblem] = []
    file_path = path if path is not None else environ.get("RON_METRICS_CONFIG") or None
    file_layer: dict[str, Any] = {}
    if file_path is not None:
        file_layer = read_file(Path(file_path), problems)
        apply_aliases(file_layer, f"file {str(file_path)!r}", problems)
    override_layer = _deep_merge({}, overrides)
    base = _deep_merge({}, defaults or {})
    # The resource-attribute allowlist may come from any source (defaults, file,
    # RON_METRICS_* or overrides); OTEL_RESOURCE_ATTRIBUTES is judged against it.
    allowlist_sources = _deep_merge(
        _deep_merge(_deep_merge(base, file_layer), ron_layer(environ, [])),
        override_layer,
    )
    # OTEL_CONFIG_FILE: the OpenTelemetry declarative file sits above our TOML file
    # and, as the specification says, replaces the other OTEL_* variables.
    declarative_path = environ.get("OTEL_CONFIG_FILE") or None
    declarative: dict[str, Any] = {}
    if declarative_path is not None:
        declarative = declarative_layer(declarative_path, problems)
    env_values, env_problems = env_layer(
        environ,
        allowed_extra=_allowed_extra(allowlist_sources),
        otel=declarative_path is None,
    )
    problems.extend(env_problems)
    apply_aliases(env_values, "the environment", problems)
    apply_aliases(override_layer, "the overrides", problems)
    merged = _deep_merge(
        _deep_merge(
            _deep_merge(_deep_merge(base, file_layer), declarative), env_values
        ),
        override_layer,
    )
    _default_otlp_timeout(merged)
    if problems:
        # Validate the rest too, so the user sees every problem in one go.
        try:
            Config.from_mapping(merged)
        except ConfigError as exc:
            problems.extend(exc.problems)
        raise ConfigError(problems)
    return Config.from_mapping(merged)


def _default_otlp_timeout(merged: dict[str, Any]) -> None:
    # The export timeout defaults to min(5s, interval): a short interval alone is a
    # valid choice, and only an explicit timeout longer than it is a conflict.
    otlp = merged.get("exporter", {}).get("otlp")
    if not isinstance(otlp, dict) or "timeout" in otlp or "interval" not in otlp:
        return
    try:
        interval = v.parse_duration(otlp["interval"])
    except v.InvalidValueError:
        return  # reported when the section is built
    if interval < OtlpConfig().timeout:
        otlp["timeout"] = interval


def _allowed_extra(layers: Mapping[str, Any]) -> tuple[str, ...]:
    labels = layers.get("labels")
    if isinstance(labels, Mapping):
        try:
            return v.parse_name_list(
                labels.get("allowed_extra", list(LabelsConfig().allowed_extra))
            )
        except v.InvalidValueError:
            return ()
    return LabelsConfig().allowed_extra
