"""
Building the model from one merged raw mapping (the TOML shape).

Unknown keys name their closest valid key; every problem of every section is
collected; a section's invariants run as soon as it is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields, replace
from types import MappingProxyType
from typing import Any, TypeVar

from ron_metrics.config import values as v
from ron_metrics.config.invariants import (
    check_cardinality,
    check_exporter,
    check_labels,
    check_prometheus,
    check_service,
)
from ron_metrics.config.model import (
    CardinalityConfig,
    Config,
    ExporterConfig,
    InstrumentRule,
    LabelsConfig,
    PrometheusConfig,
    ServiceConfig,
)
from ron_metrics.errors import ConfigError, ConfigProblem

__all__ = ["parse_config"]


def parse_config(raw: Mapping[str, Any]) -> Config:
    """
    Validate one already-merged mapping into a :class:`Config`.

    Raises:
        ConfigError: With every problem found.
    """
    problems: list[ConfigProblem] = []
    built = _build_section(Config, raw, "", problems)
    if problems or built is None:
        raise ConfigError(problems)
    return built


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
        tuning = (
            rule.attributes,
            rule.max_series,
            rule.buckets,
            rule.aggregation,
            rule.max_size,
            rule.max_scale,
        )
        if rule.drop and tuning != (None,) * len(tuning):
            problems.append(
                ConfigProblem(
                    rule_path, "'drop = true' cannot be combined with other keys"
                )
            )
        if not rule.drop and tuning == (None,) * len(tuning):
            problems.append(
                ConfigProblem(
                    rule_path,
                    "needs 'attributes', 'max_series', 'buckets', 'aggregation'"
                    " or 'drop = true'",
                )
            )
        rules.append(_replace_pattern(rule, str(pattern)))
    # Exact names take precedence over globs; among globs, the file order holds.
    rules.sort(key=lambda rule: any(ch in rule.pattern for ch in "*?["))
    return tuple(rules)


def _replace_pattern(rule: InstrumentRule, pattern: str) -> InstrumentRule:
    return replace(rule, pattern=pattern.lower())


_SECTION_CHECKS: Mapping[type, Callable[[Any, str], list[ConfigProblem]]] = (
    MappingProxyType(
        {
            ServiceConfig: check_service,
            CardinalityConfig: check_cardinality,
            LabelsConfig: check_labels,
            PrometheusConfig: check_prometheus,
            ExporterConfig: check_exporter,
        }
    )
)
