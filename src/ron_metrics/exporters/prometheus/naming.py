"""
Which exposition family an OpenTelemetry metric joins, and label names.

Both encoders (text and protobuf) name families the same way, with the
exporter's own name, unit and attribute mappings: a monotonic sum is a counter
(``_total``), a cumulative non-monotonic sum and a gauge are gauges, explicit and
exponential histograms are histograms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus._mapping import (
    map_unit,
    sanitize_attribute,
    sanitize_full_name,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    Sum,
)

from ron_metrics.hub import NO_DESCRIPTION

__all__ = ["EncoderOptions", "Identity", "identity", "sanitized", "scope_labels"]


def _family_name(metric_name: str, unit: str, kind: str) -> str:
    name = metric_name
    if kind == "counter" and name.endswith("_total"):
        name = name[:-6]
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return name


def _kind(metric: Metric) -> str:
    data = metric.data
    if isinstance(data, Sum):
        cumulative = data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        return "gauge" if (not data.is_monotonic and cumulative) else "counter"
    if isinstance(data, Gauge):
        return "gauge"
    return "histogram"  # explicit or exponential


@dataclass(frozen=True, slots=True)
class Identity:
    """
    Which exposition family a metric joins: its key, name, type, help and unit.
    """

    key: str
    name: str
    kind: str
    description: str
    unit: str


def identity(metric: Metric) -> Identity | None:
    """
    The family ``metric`` is exposed in, or ``None`` when it is not exposed.
    """
    kind = _kind(metric)
    metric_name = sanitize_full_name(metric.name)
    if not metric_name:
        return None
    description = metric.description or NO_DESCRIPTION.format(metric.name)
    unit = map_unit(metric.unit or "")
    return Identity(
        f"{metric_name}|{description}|{unit}|{kind}",
        _family_name(metric_name, unit, kind),
        kind,
        description,
        unit,
    )


_SANITIZED: dict[str, str] = {}


def sanitized(key: str) -> str:
    """
    ``key`` as a Prometheus label name (memoised: keys repeat on every series).
    """
    # Attribute keys repeat on every series: sanitise each once.
    name = _SANITIZED.get(key)
    if name is None:
        name = sanitize_attribute(key)
        if len(_SANITIZED) < 65536:
            _SANITIZED[key] = name
    return name


def scope_labels(scope: Any) -> dict[str, Any]:
    """
    The ``otel_scope_*`` labels of an instrumentation scope.
    """
    labels = {
        "otel_scope_" + key: value for key, value in (scope.attributes or {}).items()
    }
    labels["otel_scope_name"] = scope.name or ""
    labels["otel_scope_version"] = scope.version or ""
    labels["otel_scope_schema_url"] = scope.schema_url or ""
    return labels


class EncoderOptions:
    """
    What both encoders are told.

    Args:
        target_info: Emit ``target_info`` with the resource attributes.
        scope_labels: Put ``otel_scope_*`` labels on every series.
        on_clash: Told the name of a family left out because its name clashes.
    """

    def __init__(
        self,
        *,
        target_info: bool = True,
        scope_labels: bool = False,
        on_clash: Callable[[str], None] | None = None,
    ) -> None:
        self._target_info = target_info
        self._scope_labels = scope_labels
        self._on_clash = on_clash or (lambda _name: None)
        self._start_caches()

    def _start_caches(self) -> None:
        """Set up what the encoder keeps between scrapes."""
