"""
The environment as a configuration layer.

``OTEL_*`` variables follow the OpenTelemetry SDK specification; ``RON_METRICS_*``
variables address any key as ``RON_METRICS_SECTION__SUB__KEY`` and win over the
``OTEL_*`` ones. An unknown ``RON_METRICS_*`` variable is an error, like an unknown
key in the file.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ron_metrics.config.model import HISTOGRAM_AGGREGATION_NAMES
from ron_metrics.config.sources import parse_toml
from ron_metrics.errors import ConfigProblem
from ron_metrics.labels import check_label_value
from ron_metrics.logs import log_event

__all__ = ["RESOURCE_KEYS", "deep_merge", "env_layer", "ron_layer"]

_log = logging.getLogger("ron_metrics.config")

# Resource attribute keys that are our own config keys (in any resource source).
RESOURCE_KEYS = {
    "service.name": ("service", "name"),
    "service.instance.id": ("service", "instance"),
    "service.version": ("service", "build_version"),
}
_EXPORTER_KINDS = {
    "prometheus": "prometheus",
    "otlp": "otlp",
    "none": "none",
    "otlp,prometheus": "both",
    "prometheus,otlp": "both",
}
# Variables of the ron-metrics command, not config keys.
_NOT_ADDRESSABLE = {
    "RON_METRICS_CONFIG",
    "RON_METRICS_AUTOSTART",
    "RON_METRICS_AUTOSTART_MIDDLEWARE",
}
# OTEL_EXPORTER_OTLP(_METRICS)_<variable> naming a file -> exporter.otlp.<key>
_OTLP_FILES = {
    "CERTIFICATE": "ca_file",
    "CLIENT_CERTIFICATE": "client_cert",
    "CLIENT_KEY": "client_key",
}


def _put(tree: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    *parents, leaf = path
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _millis(name: str, raw: str, problems: list[ConfigProblem]) -> str | None:
    text = raw.strip()
    if not text.isdigit() or int(text) == 0:
        problems.append(
            ConfigProblem(name, "must be a positive integer of milliseconds")
        )
        return None
    return f"{int(text)}ms"


def _parse_kv_list(raw: str) -> dict[str, str] | None:
    """
    Parse the W3C-baggage-like ``k1=v1,k2=v2`` list the OTel spec uses.
    """
    result: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            return None
        result[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return result


def _resource_attributes(
    env: Mapping[str, str],
    allowed_extra: tuple[str, ...],
    tree: dict[str, Any],
    problems: list[ConfigProblem],
) -> None:
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES")
    if not raw:
        return
    pairs = _parse_kv_list(raw)
    if pairs is None:
        problems.append(
            ConfigProblem(
                "OTEL_RESOURCE_ATTRIBUTES", "must be a list of key=value pairs"
            )
        )
        return
    for key, value in pairs.items():
        if key in RESOURCE_KEYS:
            _put(tree, RESOURCE_KEYS[key], value)
        elif key in allowed_extra:
            _put(tree, ("labels", "extra", key), value)
        else:
            # Keys only, never values: a value might be anything; and a key that
            # itself looks like a secret is not shown either.
            log_event(
                _log,
                logging.WARNING,
                "resource_attribute_ignored",
                source="OTEL_RESOURCE_ATTRIBUTES",
                key=key if check_label_value(key) is None else "(key not shown)",
                why="not in labels.allowed_extra",
            )


def _exporter_kind(
    env: Mapping[str, str], tree: dict[str, Any], problems: list[ConfigProblem]
) -> None:
    raw = env.get("OTEL_METRICS_EXPORTER")
    if not raw:
        return
    normalized = ",".join(sorted(part.strip() for part in raw.lower().split(",")))
    kind = _EXPORTER_KINDS.get(normalized)
    if kind is None:
        problems.append(
            ConfigProblem(
                "OTEL_METRICS_EXPORTER",
                f"unsupported value {raw!r}; use prometheus, otlp, none or 'otlp,prometheus'",
            )
        )
    else:
        _put(tree, ("exporter", "kind"), kind)


def _otlp_variables(
    env: Mapping[str, str], tree: dict[str, Any], problems: list[ConfigProblem]
) -> None:
    otlp = ("exporter", "otlp")
    _otlp_endpoint(env, tree)
    _reader_variables(env, tree, problems)
    # The signal-specific variable (…_METRICS_…) is read last so it wins.
    for suffix in ("", "METRICS_"):
        _otlp_prefixed(env, f"OTEL_EXPORTER_OTLP_{suffix}", tree, problems)
    if raw := env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"):
        _put(tree, (*otlp, "temporality"), raw.strip().lower())


def _reader_variables(
    env: Mapping[str, str], tree: dict[str, Any], problems: list[ConfigProblem]
) -> None:
    otlp = ("exporter", "otlp")
    name = "OTEL_METRIC_EXPORT_INTERVAL"
    if (raw := env.get(name)) and (ms := _millis(name, raw, problems)):
        _put(tree, (*otlp, "interval"), ms)
    # The reader's export timeout; the exporter's own variables win over it.
    name = "OTEL_METRIC_EXPORT_TIMEOUT"
    if (raw := env.get(name)) and (ms := _millis(name, raw, problems)):
        _put(tree, (*otlp, "timeout"), ms)
    name = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
    raw = env.get(name, "").strip().lower()
    if raw in HISTOGRAM_AGGREGATION_NAMES:
        chosen = HISTOGRAM_AGGREGATION_NAMES[raw]
        _put(tree, ("cardinality", "histogram_aggregation"), chosen)
    elif raw:
        why = f"must be one of {', '.join(map(repr, HISTOGRAM_AGGREGATION_NAMES))}"
        problems.append(ConfigProblem(name, why))


def _otlp_prefixed(
    env: Mapping[str, str],
    prefix: str,
    tree: dict[str, Any],
    problems: list[ConfigProblem],
) -> None:
    otlp = ("exporter", "otlp")
    if raw := env.get(f"{prefix}PROTOCOL"):
        _put(tree, (*otlp, "protocol"), raw)
    if raw := env.get(f"{prefix}HEADERS"):
        headers = _parse_kv_list(raw)
        if headers is None:
            # Never echo the value: headers carry tokens.
            problems.append(
                ConfigProblem(f"{prefix}HEADERS", "must be a list of key=value pairs")
            )
        else:
            _put(tree, (*otlp, "headers"), headers)
    name = f"{prefix}TIMEOUT"
    if (raw := env.get(name)) and (ms := _millis(name, raw, problems)):
        _put(tree, (*otlp, "timeout"), ms)
    if raw := env.get(f"{prefix}COMPRESSION"):
        _put(tree, (*otlp, "compression"), raw.strip().lower())
    for variable, key in _OTLP_FILES.items():
        if raw := env.get(f"{prefix}{variable}"):
            _put(tree, (*otlp, key), raw)
    if raw := env.get(f"{prefix}INSECURE"):
        # The endpoint's scheme decides (http:// plaintext, https:// TLS); the flag
        # may agree with it, never contradict it.
        endpoint = str(
            env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or ""
        )
        if otel_boolean(env, f"{prefix}INSECURE") and endpoint.startswith("https://"):
            problems.append(
                ConfigProblem(
                    f"{prefix}INSECURE",
                    "'true' contradicts an https:// endpoint; use http:// for plaintext",
                )
            )


def otel_boolean(env: Mapping[str, str], name: str) -> bool:
    """A boolean ``OTEL_*`` variable as the specification reads it (see the docs)."""
    raw = env.get(name, "").strip().lower()
    if raw not in {"", "true", "false"}:
        why = "only a case-insensitive 'true' is true; any other value reads as false"
        log_event(
            _log, logging.WARNING, "otel_boolean_read_as_false", variable=name, why=why
        )
    return raw == "true"


def _sdk_variables(
    env: Mapping[str, str], tree: dict[str, Any], problems: list[ConfigProblem]
) -> None:
    if env.get("OTEL_SDK_DISABLED"):
        _put(tree, ("sdk", "disabled"), otel_boolean(env, "OTEL_SDK_DISABLED"))
    if raw := env.get("OTEL_METRICS_EXEMPLAR_FILTER"):
        _put(tree, ("sdk", "exemplar_filter"), raw.strip().lower())


def _otlp_endpoint(env: Mapping[str, str], tree: dict[str, Any]) -> None:
    # The signal-specific variable is used as it is. The generic one is a base URL:
    # over HTTP the exporter appends "v1/metrics" to its path (over gRPC it is
    # the address itself).
    if raw := env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        _put(tree, ("exporter", "otlp", "endpoint"), raw)
        return
    raw = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not raw:
        return
    protocol = env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol == "http/protobuf":
        parts = urllib.parse.urlsplit(raw)
        path = parts.path.rstrip("/") + "/v1/metrics"
        raw = urllib.parse.urlunsplit(parts._replace(path=path))
    _put(tree, ("exporter", "otlp", "endpoint"), raw)


def _prometheus_variables(env: Mapping[str, str], tree: dict[str, Any]) -> None:
    host = env.get("OTEL_EXPORTER_PROMETHEUS_HOST")
    port = env.get("OTEL_EXPORTER_PROMETHEUS_PORT")
    if not (host or port):
        return
    host = host or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    _put(tree, ("exporter", "prometheus", "bind"), f"{host}:{port or '9464'}")


def _otel_layer(
    env: Mapping[str, str],
    allowed_extra: tuple[str, ...],
    problems: list[ConfigProblem],
) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    _resource_attributes(env, allowed_extra, tree, problems)
    if raw := env.get("OTEL_SERVICE_NAME"):
        _put(tree, ("service", "name"), raw)
    _exporter_kind(env, tree, problems)
    _sdk_variables(env, tree, problems)
    _otlp_variables(env, tree, problems)
    _prometheus_variables(env, tree)
    return tree


def ron_layer(env: Mapping[str, str], problems: list[ConfigProblem]) -> dict[str, Any]:
    """
    The ``RON_METRICS_SECTION__KEY`` variables as a config tree.
    """
    tree: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith("RON_METRICS_") or name in _NOT_ADDRESSABLE:
            continue
        path = tuple(part.lower() for part in name[len("RON_METRICS_") :].split("__"))
        _put(tree, path, _scalar(name, raw, problems))
    return tree


def _scalar(name: str, raw: str, problems: list[ConfigProblem]) -> object:
    """
    Read an env value as a TOML value when it is one (lists, numbers, booleans);
    otherwise it is a string. Oversized or deeply nested values are problems.
    """

    found: list[ConfigProblem] = []
    parsed = parse_toml(
        f"v = {raw}".encode("utf-8", "surrogateescape"), name, "the value", found
    )
    if "v" in parsed:
        return parsed["v"]
    bounded = [p for p in found if "valid TOML" not in p.message]
    problems.extend(bounded)
    return raw


def env_layer(
    env: Mapping[str, str], *, allowed_extra: tuple[str, ...], otel: bool
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """
    Turn the environment into a config tree, ``RON_METRICS_*`` over ``OTEL_*``.

    Args:
        otel: Read the ``OTEL_*`` variables (not when a declarative
            configuration file is in use: the specification says it replaces them).

    Returns:
        The tree and the problems found in the environment.
    """
    problems: list[ConfigProblem] = []
    otel_tree = _otel_layer(env, allowed_extra, problems) if otel else {}
    ron = ron_layer(env, problems)
    return deep_merge(otel_tree, ron), problems


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """
    Merge ``top`` over ``base``: tables merge key by key, anything else replaces.
    """
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping):
            below = merged.get(key)
            merged[key] = deep_merge(below if isinstance(below, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged
