"""
``OTEL_CONFIG_FILE``: the OpenTelemetry declarative configuration file as a source.

The file is loaded and schema-checked by the ``opentelemetry-configuration`` package
(the optional extra ``ron-metrics[declarative]``), then the parts that map to our
configuration are translated into a config tree: resource attributes, the
meter provider's readers (one periodic OTLP reader, one Prometheus pull reader),
views (instrument-name selectors, included attribute keys, explicit bucket
boundaries, drop, cardinality limits), the exemplar filter and ``disabled``.

Any metrics setting we cannot honour is a problem naming its path in the file —
never silently dropped. Sections that do not concern metrics (tracer and logger
providers, propagators, instrumentation) are left to whatever configures those
signals.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from ron_metrics._files import read_outside_file
from ron_metrics.config.environment import RESOURCE_KEYS
from ron_metrics.config.model import HISTOGRAM_AGGREGATION_NAMES
from ron_metrics.config.sources import MAX_CONFIG_BYTES
from ron_metrics.errors import ConfigProblem

__all__ = ["NOT_METRICS", "declarative_layer"]

NOT_METRICS = frozenset(
    {
        "tracer_provider",
        "logger_provider",
        "propagator",
        "instrumentation/development",
        "instrumentation_development",
        "log_level",
        "attribute_limits",
    }
)
_OTLP_KEYS = {
    "endpoint": "endpoint",
    "compression": "compression",
    "certificate_file": "ca_file",
    "client_certificate_file": "client_cert",
    "client_key_file": "client_key",
    "temporality_preference": "temporality",
}


class _Translation:
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.tree: dict[str, Any] = {}
        self._problems = problems

    def put(self, path: tuple[str, ...], value: object) -> None:
        table = self.tree
        for part in path[:-1]:
            table = table.setdefault(part, {})
        table[path[-1]] = value

    def refuse(self, where: str, why: str = "not supported by ron-metrics") -> None:
        self._problems.append(ConfigProblem(f"OTEL_CONFIG_FILE:{where}", why))

    def only(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                self.refuse(f"{where}.{key}")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _load(path: str, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    try:
        from opentelemetry.configuration.file import load_config_file
    except ImportError:
        problems.append(
            ConfigProblem(
                "OTEL_CONFIG_FILE",
                "reading a declarative configuration file needs the optional"
                " dependency: pip install 'ron-metrics[declarative]'",
            )
        )
        return None
    # PyYAML comes with the optional dependency, like the loader itself.
    from ron_metrics.config.bounded_yaml import check_yaml_bounds, without_values

    try:
        check_yaml_bounds(read_outside_file(path, limit=MAX_CONFIG_BYTES))
    except (OSError, ValueError) as exc:
        problems.append(ConfigProblem("OTEL_CONFIG_FILE", f"{path!r}: {exc}"))
        return None
    try:
        model = load_config_file(path)
    except Exception as exc:  # the loader raises its own and yaml/json/OS errors
        # Its messages quote values from the file (a secret, say): never shown.
        problems.append(
            ConfigProblem("OTEL_CONFIG_FILE", f"{path!r}: {without_values(str(exc))}")
        )
        return None
    plain: dict[str, Any] = _plain(model)
    return plain


def declarative_layer(path: str, problems: list[ConfigProblem]) -> dict[str, Any]:
    """
    The file at ``path`` as a ron-metrics config tree; problems name file paths.
    """
    data = _load(path, problems)
    if data is None:
        return {}
    out = _Translation(problems)
    for key, value in data.items():
        if key in {"file_format"} or key in NOT_METRICS:
            continue
        if key == "disabled":
            out.put(("sdk", "disabled"), value)
        elif key == "resource":
            _resource(value, out)
        elif key == "meter_provider":
            _meter_provider(value, out)
        else:
            out.refuse(key)
    return out.tree


def _resource(resource: Mapping[str, Any], out: _Translation) -> None:
    out.only(resource, {"attributes", "attributes_list", "schema_url"}, "resource")
    pairs: list[tuple[str, Any]] = [
        (a["name"], a.get("value")) for a in resource.get("attributes", [])
    ]
    for item in str(resource.get("attributes_list", "")).split(","):
        key, sep, text = item.partition("=")
        if sep:
            pairs.append((key.strip(), text.strip()))
    for index, (name, value) in enumerate(pairs):
        if not isinstance(value, str | int | float):
            out.refuse(
                f"resource.attributes[{index}]", "only scalar values are supported"
            )
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.put(RESOURCE_KEYS.get(name, ("labels", "extra", name)), text)


def _meter_provider(provider: Mapping[str, Any], out: _Translation) -> None:
    out.only(provider, {"readers", "views", "exemplar_filter"}, "meter_provider")
    if "exemplar_filter" in provider:
        out.put(("sdk", "exemplar_filter"), provider["exemplar_filter"])
    periodic = pull = 0
    for index, reader in enumerate(provider.get("readers", [])):
        where = f"meter_provider.readers[{index}]"
        if "periodic" in reader:
            periodic += 1
            _periodic(reader["periodic"], f"{where}.periodic", out)
        if "pull" in reader:
            pull += 1
            _pull(reader["pull"], f"{where}.pull", out)
        out.only(reader, {"periodic", "pull"}, where)
    if periodic > 1 or pull > 1:
        out.refuse(
            "meter_provider.readers",
            "at most one periodic (OTLP) and one pull (Prometheus) reader: ron-metrics"
            " feeds every exporter from one collection",
        )
    kinds = {(0, 0): "none", (1, 0): "otlp", (0, 1): "prometheus", (1, 1): "both"}
    out.put(("exporter", "kind"), kinds.get((min(periodic, 1), min(pull, 1)), "none"))
    for index, view in enumerate(provider.get("views", [])):
        _view(view, f"meter_provider.views[{index}]", out)


def _limits(reader: Mapping[str, Any], where: str, out: _Translation) -> None:
    limits = reader.get("cardinality_limits")
    if limits is None:
        return
    out.only(limits, {"default"}, f"{where}.cardinality_limits")
    if "default" in limits:
        out.put(("cardinality", "max_series"), limits["default"])


def _periodic(reader: Mapping[str, Any], where: str, out: _Translation) -> None:
    out.only(reader, {"exporter", "interval", "timeout", "cardinality_limits"}, where)
    otlp = ("exporter", "otlp")
    if "interval" in reader:
        out.put((*otlp, "interval"), f"{reader['interval']}ms")
    if "timeout" in reader:
        out.put((*otlp, "timeout"), f"{reader['timeout']}ms")
    _limits(reader, where, out)
    exporter = reader.get("exporter", {})
    kinds = [key for key in exporter if key in {"otlp_http", "otlp_grpc"}]
    out.only(exporter, {"otlp_http", "otlp_grpc"}, f"{where}.exporter")
    for kind in kinds:
        settings = exporter[kind]
        at = f"{where}.exporter.{kind}"
        out.put((*otlp, "protocol"), "grpc" if kind == "otlp_grpc" else "http/protobuf")
        _otlp_settings(settings, at, out)


def _otlp_settings(settings: Mapping[str, Any], at: str, out: _Translation) -> None:
    otlp = ("exporter", "otlp")
    allowed = {
        *_OTLP_KEYS,
        "headers",
        "headers_list",
        "timeout",
        "default_histogram_aggregation",
        "insecure",
    }
    out.only(settings, allowed, at)
    for key, ours in _OTLP_KEYS.items():
        if key in settings:
            out.put((*otlp, ours), settings[key])
    if "timeout" in settings:
        out.put((*otlp, "timeout"), f"{settings['timeout']}ms")
    headers = {h["name"]: h.get("value", "") for h in settings.get("headers", [])}
    for item in str(settings.get("headers_list", "")).split(","):
        name, sep, value = item.partition("=")
        if sep:
            headers.setdefault(name.strip(), value.strip())
    if headers:
        out.put((*otlp, "headers"), headers)
    aggregation = settings.get("default_histogram_aggregation")
    if aggregation in HISTOGRAM_AGGREGATION_NAMES:
        out.put(
            ("cardinality", "histogram_aggregation"),
            HISTOGRAM_AGGREGATION_NAMES[aggregation],
        )
    elif aggregation is not None:
        out.refuse(f"{at}.default_histogram_aggregation")
    if settings.get("insecure") and str(settings.get("endpoint", "")).startswith(
        "https"
    ):
        out.refuse(f"{at}.insecure", "contradicts an https:// endpoint")


def _pull(reader: Mapping[str, Any], where: str, out: _Translation) -> None:
    out.only(reader, {"exporter", "cardinality_limits"}, where)
    _limits(reader, where, out)
    exporter = reader.get("exporter", {})
    out.only(exporter, {"prometheus_development"}, f"{where}.exporter")
    settings = exporter.get("prometheus_development")
    if settings is None:
        return
    at = f"{where}.exporter.prometheus/development"
    out.only(
        settings,
        {"host", "port", "without_scope_info", "without_target_info"},
        at,
    )
    host = str(settings.get("host", "127.0.0.1"))
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    out.put(("exporter", "prometheus", "bind"), f"{shown}:{settings.get('port', 9464)}")
    if "without_scope_info" in settings:
        out.put(
            ("exporter", "prometheus", "scope_labels"),
            not settings["without_scope_info"],
        )
    if "without_target_info" in settings:
        out.put(
            ("exporter", "prometheus", "target_info"),
            not settings["without_target_info"],
        )


def _view(view: Mapping[str, Any], where: str, out: _Translation) -> None:
    out.only(view, {"selector", "stream"}, where)
    selector = view.get("selector", {})
    out.only(selector, {"instrument_name"}, f"{where}.selector")
    name = selector.get("instrument_name")
    if not name:
        out.refuse(f"{where}.selector.instrument_name", "is required")
        return
    stream = view.get("stream", {})
    out.only(
        stream,
        {"aggregation", "attribute_keys", "aggregation_cardinality_limit"},
        f"{where}.stream",
    )
    rule: dict[str, Any] = {}
    keys = stream.get("attribute_keys", {})
    out.only(keys, {"included"}, f"{where}.stream.attribute_keys")
    if "included" in keys:
        rule["attributes"] = list(keys["included"])
    if "aggregation_cardinality_limit" in stream:
        rule["max_series"] = stream["aggregation_cardinality_limit"]
    aggregation = stream.get("aggregation", {})
    at = f"{where}.stream.aggregation"
    exponential = "base2_exponential_bucket_histogram"
    out.only(
        aggregation, {"explicit_bucket_histogram", exponential, "drop", "default"}, at
    )
    if "drop" in aggregation:
        rule = {"drop": True}
    bucket = aggregation.get("explicit_bucket_histogram")
    if bucket is not None:
        out.only(bucket, {"boundaries"}, f"{at}.explicit_bucket_histogram")
        rule["aggregation"] = "explicit"
        if "boundaries" in bucket:
            rule["buckets"] = list(bucket["boundaries"])
    base2 = aggregation.get(exponential)
    if base2 is not None:
        out.only(base2, {"max_size", "max_scale"}, f"{at}.{exponential}")
        rule["aggregation"] = "exponential"
        rule.update({k: base2[k] for k in ("max_size", "max_scale") if k in base2})
    out.put(("cardinality", "instruments", name), rule)
