"""
The one loader, :func:`load_config`.

Sources, highest precedence first: keyword overrides, the environment
(``RON_METRICS_*`` over ``OTEL_*``, or an OpenTelemetry declarative file), the
TOML file, defaults. Every problem in every source is collected and raised
together as one :class:`ConfigError`, each naming its key path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ron_metrics.config import values as v
from ron_metrics.config.declarative import declarative_layer
from ron_metrics.config.environment import deep_merge as _deep_merge
from ron_metrics.config.environment import env_layer, ron_layer
from ron_metrics.config.model import Config, LabelsConfig, OtlpConfig
from ron_metrics.config.parsing import parse_config
from ron_metrics.config.sources import apply_aliases, read_file
from ron_metrics.errors import ConfigError, ConfigProblem

__all__ = ["load_config"]


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
    # A file that cannot be read or parsed is the problem: what it would have
    # set (a required service name, say) is not reported as missing too.
    unreadable = bool(problems)
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
        if not unreadable:
            # Validate the rest too, so the user sees every problem in one go.
            try:
                parse_config(merged)
            except ConfigError as exc:
                problems.extend(exc.problems)
        raise ConfigError(problems)
    return parse_config(merged)


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
