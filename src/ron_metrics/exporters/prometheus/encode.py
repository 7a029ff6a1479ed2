"""
The direct encoder: ``MetricsData`` → Prometheus text 0.0.4 or OpenMetrics 1.0.

The reference path translates each collection into prometheus_client family objects
(opentelemetry-exporter-prometheus) and then encodes those: most of a scrape's cost.
This module writes the same exposition straight from the collected data points,
sample for sample (the test suite checks that against the reference path), with the
same naming (the exporter's own name, unit and attribute mappings are reused) and
the same formatting (prometheus_client's float formatting and escaping rules):

- a family per (name, description, unit, type), in first-seen order, after
  ``target_info`` (the resource) when enabled; a monotonic sum is a counter
  (``_total``), a cumulative non-monotonic sum and a gauge are gauges, an explicit
  histogram is a histogram; exponential histograms are not exposed (the exporter
  does not expose them either);
- labels: optional scope labels, then the point's attributes, names sanitised,
  non-string values JSON-encoded, every series of a metric carrying the same label
  names (missing ones empty), sorted;
- each series' label block is rendered once and cached between scrapes; the cache
  keeps only the series seen in the latest scrape, so it follows new and dropped
  series and reloads on its own.

Names that clash with an earlier family are left out as on the reference path
(:func:`ron_metrics.hub.without_name_clashes`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from json import dumps
from typing import Any

from opentelemetry.exporter.prometheus._mapping import (
    map_unit,
    sanitize_attribute,
    sanitize_full_name,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from prometheus_client import utils as _prometheus_utils

from ron_metrics.exporters.prometheus.render import Format
from ron_metrics.hub import NO_DESCRIPTION, SAMPLE_SUFFIXES

__all__ = ["DirectEncoder"]

_TARGET_NAME = "target"
_TARGET_HELP = "Target metadata"
_LEGACY_LABEL_RUNES = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)
# Encoding holds the GIL; every this many series it is let go for a moment, so the
# event loop answers /healthz and /readyz while a large scrape renders.
_YIELD_EVERY = 2000


@dataclass(slots=True)
class _Scope:
    scope: Any  # the SDK's scope object (identity check)
    labels: dict[str, Any]


@dataclass(slots=True)
class _Series:
    """
    One series' labels, rendered: its sorted label names, values and block.
    """

    attributes: Any  # the SDK's attributes object (identity check), or None
    scope: _Scope | None
    keys: tuple[str, ...]
    values: tuple[str, ...]
    block: str
    _around_le: tuple[str, str] | None = None

    def around_le(self) -> tuple[str, str]:
        """
        The block split around a histogram's ``le`` label (an attribute named
        ``le`` gives way to the bucket bound, as on the reference path).
        """
        if self._around_le is None:
            pairs = list(zip(self.keys, self.values, strict=False))
            self._around_le = (
                _block([p for p in pairs if p[0] < "le"]),
                _block([p for p in pairs if p[0] > "le"]),
            )
        return self._around_le


@dataclass(slots=True)
class _Family:
    name: str
    type: str
    documentation: str
    unit: str
    labelnames: tuple[str, ...]
    # One entry per sample, as plain strings (cheap for the garbage collector):
    # the name suffix ("", "_total", "_bucket", ...) and the rest of the line.
    suffixes: list[str] = field(default_factory=list)
    rests: list[str] = field(default_factory=list)
    metrics: int = 0
    # Only for a family several metrics merged into: (suffix, block) already seen.
    seen: set[tuple[str, str]] | None = None
    repeated: bool = False

    def add(self, suffix: str, block: str, value: str) -> None:
        if self.seen is not None:
            key = (suffix, block)
            if key in self.seen:
                self.repeated = True
                return
            self.seen.add(key)
        self.suffixes.append(suffix)
        self.rests.append(f"{{{block}}} {value}\n" if block else f" {value}\n")

    def merging(self) -> None:
        # A second metric joins: from now on a series both report is kept once.
        self.metrics += 1
        if self.metrics == 2:
            self.seen = {
                (suffix, _block_of(rest))
                for suffix, rest in zip(self.suffixes, self.rests, strict=True)
            }


def _label_value(value: Any) -> str:
    return _text(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_pairs(names: Sequence[str], values: Sequence[str]) -> list[tuple[str, str]]:
    return sorted(zip(names, values, strict=False))


def _block(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs)


def _family_name(metric_name: str, unit: str, kind: str) -> str:
    name = metric_name
    if kind == "counter" and name.endswith("_total"):
        name = name[:-6]
    if unit and not name.endswith("_" + unit):
        name += "_" + unit
    return name


def _kind(metric: Metric) -> str | None:
    data = metric.data
    if isinstance(data, Sum):
        cumulative = data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        return "gauge" if (not data.is_monotonic and cumulative) else "counter"
    if isinstance(data, Gauge):
        return "gauge"
    if isinstance(data, Histogram):
        return "histogram"
    return None  # exponential histograms: not exposed, as on the reference path


class DirectEncoder:
    """
    Encodes collections; keeps each series' label block between scrapes.

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
        # Caches kept between scrapes; each scrape keeps only what it used.
        self._cache: dict[tuple[int, int], _Series] = {}
        self._next_cache: dict[tuple[int, int], _Series] = {}
        self._scopes: dict[int, _Scope] = {}
        self._next_scopes: dict[int, _Scope] = {}
        self._blocks: dict[Any, _Series] = {}
        self._next_blocks: dict[Any, _Series] = {}
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._le_labels: dict[tuple[float, ...], list[str]] = {}

    def encode(self, data: MetricsData, fmt: Format) -> bytes:
        """
        The exposition of ``data`` in ``fmt``. Blocking; call it off the event loop.
        """
        return "".join(self.chunks(data, fmt)).encode("utf-8")

    def chunks(self, data: MetricsData, fmt: Format) -> Iterator[str]:
        """
        The exposition of ``data`` in ``fmt``, as text pieces (for streaming).
        """
        self._next_cache, self._next_scopes, self._next_blocks = {}, {}, {}
        families = _without_clashes(list(self._families(data)), self._on_clash)
        self._cache, self._next_cache = self._next_cache, {}
        self._scopes, self._next_scopes = self._next_scopes, {}
        self._blocks, self._next_blocks = self._next_blocks, {}
        if len(self._interned) > 4 * len(self._cache) + 1024:
            self._interned = {}
        writer = _write_openmetrics if fmt is Format.OPENMETRICS else _write_text
        return writer(families)

    # -- translation ------------------------------------------------------------

    def _families(self, data: MetricsData) -> Iterator[_Family]:
        families: dict[str, _Family] = {}
        if self._target_info and data.resource_metrics:
            families[_TARGET_NAME] = self._target(data)
        series = 0
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                scope = self._scope(sm.scope)
                for metric in sm.metrics:
                    series += self._translate(metric, scope, families)
                    if series >= _YIELD_EVERY:
                        series = 0
                        time.sleep(0)
        yield from families.values()

    def _target(self, data: MetricsData) -> _Family:
        attributes: dict[str, Any] = {}
        for rm in data.resource_metrics:
            attributes = {**attributes, **rm.resource.attributes}
        labels = {sanitize_attribute(k): v for k, v in attributes.items()}
        block = _block(sorted((k, v) for k, v in labels.items()))
        family = _Family(_TARGET_NAME, "info", _TARGET_HELP, "", tuple(labels))
        family.add("_info", block, "1.0")
        return family

    def _scope(self, scope: Any) -> _Scope:
        found = self._scopes.get(id(scope))
        if found is None or found.scope is not scope:
            attrs: dict[str, Any] = {}
            if self._scope_labels:
                attrs = {
                    "otel_scope_" + key: value
                    for key, value in (scope.attributes or {}).items()
                }
                attrs["otel_scope_name"] = scope.name or ""
                attrs["otel_scope_version"] = scope.version or ""
                attrs["otel_scope_schema_url"] = scope.schema_url or ""
            found = _Scope(scope, attrs)
        self._next_scopes[id(scope)] = found
        return found

    def _translate(
        self, metric: Metric, scope: _Scope, families: dict[str, _Family]
    ) -> int:
        kind = _kind(metric)
        if kind is None:
            return 0
        metric_name = sanitize_full_name(metric.name)
        if not metric_name:
            return 0
        description = metric.description or NO_DESCRIPTION.format(metric.name)
        unit = map_unit(metric.unit or "")
        points = metric.data.data_points
        series = [self._series(p.attributes, scope) for p in points]
        first = series[0].keys if series else ()
        uniform = all(s.keys is first for s in series)
        keys = (
            first
            if uniform
            else self._intern(tuple(sorted({key for s in series for key in s.keys})))
        )
        family_id = f"{metric_name}|{description}|{unit}|{kind}"
        family = families.get(family_id)
        if family is None:
            family = _Family(
                _family_name(metric_name, unit, kind), kind, description, unit, keys
            )
            families[family_id] = family
        family.merging()
        own_blocks = uniform and family.labelnames is keys
        for point, one in zip(points, series, strict=True):
            if own_blocks:
                self._add_point(family, one, point)
            else:
                # Labels missing from a series are empty; a merged metric is zipped
                # against the family's label names by position (the reference's way).
                row = dict(zip(one.keys, one.values, strict=True))
                values = tuple(row.get(k, "") for k in keys)
                self._add_point(family, self._aligned(family.labelnames, values), point)
        return len(points)

    def _intern(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        return self._interned.setdefault(keys, keys)

    def _series(self, attributes: Any, scope: _Scope) -> _Series:
        # The SDK hands out the same attributes object for a series on every
        # collection: its label block is rendered once and reused while it lives.
        cache_key = (id(attributes), id(scope))
        found = self._cache.get(cache_key)
        if found is None or found.attributes is not attributes:
            row = {
                _sanitized(k): _text(v)
                for k, v in chain(scope.labels.items(), (attributes or {}).items())
            }
            keys = self._intern(tuple(sorted(row)))
            values = tuple(row[k] for k in keys)
            pairs = zip(keys, values, strict=True)
            found = _Series(attributes, scope, keys, values, _block(pairs))
        self._next_cache[cache_key] = found
        return found

    def _aligned(self, names: tuple[str, ...], values: tuple[str, ...]) -> _Series:
        key = (names, values)
        found = self._blocks.get(key)
        if found is None:
            pairs = _label_pairs(names, values)
            found = _Series(None, None, names, values, _block(pairs))
        self._next_blocks[key] = found
        return found

    def _add_point(
        self,
        family: _Family,
        series: _Series,
        point: NumberDataPoint | HistogramDataPoint | Any,
    ) -> None:
        block = series.block
        if not isinstance(point, HistogramDataPoint):
            suffix = "_total" if family.type == "counter" else ""
            family.add(suffix, block, _number(point.value))
            return
        before, after = series.around_le()
        total = 0
        les = self._les(point.explicit_bounds)
        for le, count in zip(les, point.bucket_counts, strict=False):
            total += count
            joined = ",".join(part for part in (before, le, after) if part)
            family.add("_bucket", joined, _number(total))
        if float(les[0][4:-1]) >= 0:
            family.add("_count", block, _number(total))
            family.add("_sum", block, _number(point.sum))

    def _les(self, bounds: Sequence[float]) -> list[str]:
        key = tuple(bounds)
        found = self._le_labels.get(key)
        if found is None:
            found = [
                f'le="{_label_value(bound)}"'
                for bound in [*(f"{b}" for b in bounds), "+Inf"]
            ]
            if len(self._le_labels) < 1024:
                self._le_labels[key] = found
        return found


def _without_clashes(
    families: list[_Family], on_clash: Callable[[str], None]
) -> list[_Family]:
    # The reference path's rule (see ron_metrics.hub.without_name_clashes): the
    # first family keeps a name; a later one reusing any of its names is left
    # out, and a series repeated within a family is kept once.
    taken: set[str] = set()
    kept: list[_Family] = []
    for family in families:
        own = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names = {family.name, family.name + own}
        names.update(
            family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())
        )
        if names & taken:
            on_clash(family.name)
            continue
        taken |= names
        if family.repeated:
            on_clash(family.name)
        kept.append(family)
    return kept


def _block_of(rest: str) -> str:
    # The label block of a stored line rest ("{block} value\n" or " value\n").
    return rest[1 : rest.rindex("} ")] if rest.startswith("{") else ""


def _number(value: float) -> str:
    # prometheus_client's formatting: repr of the float, except +Inf/-Inf/NaN and
    # Go-style exponents for large values, which its own function handles.
    number = float(value)
    text = repr(number)
    if math.isnan(number) or math.isinf(number) or (number > 0 and text.find(".") > 6):
        slow: str = _prometheus_utils.floatToGoString(number)  # type: ignore[no-untyped-call]  # untyped upstream
        return slow
    return text


_SANITIZED: dict[str, str] = {}


def _sanitized(key: str) -> str:
    # Attribute keys repeat on every series: sanitise each once.
    name = _SANITIZED.get(key)
    if name is None:
        name = sanitize_attribute(key)
        if len(_SANITIZED) < 65536:
            _SANITIZED[key] = name
    return name


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value, default=str)


def _help_text(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def _help_openmetrics(documentation: str) -> str:
    return _help_text(documentation).replace('"', r"\"")


def _write_text(families: Sequence[_Family]) -> Iterator[str]:
    for family in families:
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
            kind = "gauge"
        yield f"# HELP {name} {_help_text(family.documentation)}\n"
        yield f"# TYPE {name} {kind}\n"
        name = family.name
        for suffix, rest in zip(family.suffixes, family.rests, strict=True):
            yield name + suffix + rest


def _openmetrics_sample_name(name: str) -> str:
    if all(ch in _LEGACY_LABEL_RUNES for ch in name):
        return name
    return "".join(ch if ch in _LEGACY_LABEL_RUNES else "_" for ch in name)


def _write_openmetrics(families: Sequence[_Family]) -> Iterator[str]:
    for family in families:
        yield f"# HELP {family.name} {_help_openmetrics(family.documentation)}\n"
        yield f"# TYPE {family.name} {family.type}\n"
        if family.unit:
            yield f"# UNIT {family.name} {family.unit}\n"
        names: dict[str, str] = {}
        for suffix, rest in zip(family.suffixes, family.rests, strict=True):
            name = names.get(suffix)
            if name is None:
                name = names[suffix] = _openmetrics_sample_name(family.name + suffix)
            yield name + rest
    yield "# EOF\n"
