"""
The sections on how this process runs: ``[sdk]``, ``[multiprocess]`` and
``[runtime_metrics]`` (frozen dataclasses, as in :mod:`ron_metrics.config.model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ron_metrics.config import values as v
from ron_metrics.config.options import opt as _opt

__all__ = [
    "EXEMPLAR_FILTERS",
    "GAUGE_POLICIES",
    "RUNTIME_METRIC_GROUPS",
    "MultiprocessConfig",
    "RuntimeMetricsConfig",
    "SdkConfig",
]

GAUGE_POLICIES = ("last", "max", "min", "sum")


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiprocessConfig:
    """
    ``[multiprocess]``: the processes of one service share one Prometheus port.

    Every process started with the same ``dir`` joins one group; one of them serves
    ``exporter.prometheus.bind`` with the group's totals.
    """

    dir: str | None = field(default=None, metadata=_opt(v.parse_optional_str))
    gauge: str = field(default="last", metadata=_opt(v.parse_choice(*GAUGE_POLICIES)))

    @property
    def enabled(self) -> bool:
        """True when a group directory is configured."""
        return self.dir is not None


RUNTIME_METRIC_GROUPS = ("process", "gc", "gc_pauses")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeMetricsConfig:
    """
    ``[runtime_metrics]``: the process's own CPU, memory, descriptors, threads and
    garbage collection, read at each collection.
    """

    enabled: bool = field(default=True, metadata=_opt(v.parse_bool))
    groups: tuple[str, ...] = field(
        default=RUNTIME_METRIC_GROUPS,
        metadata=_opt(v.parse_choice_list(*RUNTIME_METRIC_GROUPS)),
    )


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
    fast_path: bool = field(default=True, metadata=_opt(v.parse_bool))
