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
  histogram is a histogram; an exponential histogram is a histogram of its count
  and sum only (the text formats have no exponential buckets; the exporter
  exposes none of it);
- labels: optional scope labels, then the point's attributes, names sanitised,
  non-string values JSON-encoded, every series of a metric carrying the same label
  names (missing ones empty), sorted;
- OpenMetrics only: a point's exemplars after its counter sample or its buckets'
  lines, the latest per bucket (the reference path writes none; the test suite
  checks that they are all this encoder adds);
- each series' label block is rendered once and cached between scrapes; the cache
  keeps only the series seen in the latest scrape, so it follows new and dropped
  series and reloads on its own.

Names that clash with an earlier family are left out as on the reference path
(:func:`ron_metrics.hub.without_name_clashes`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

from opentelemetry.exporter.prometheus._mapping import (
    sanitize_attribute,
)
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
)

from ron_metrics.exporters.prometheus.exposition import (
    Family,
    Scope,
    Series,
    exemplar_text,
    label_block,
    label_value,
    latest_by_bucket,
    number,
    text,
    without_clashes,
    write_openmetrics,
    write_text,
)
from ron_metrics.exporters.prometheus.naming import (
    EncoderOptions,
    identity,
    sanitized,
    scope_labels,
)
from ron_metrics.exporters.prometheus.render import Format

__all__ = ["DirectEncoder"]

_TARGET_NAME = "target"
_TARGET_HELP = "Target metadata"
# Encoding holds the GIL; every this many series it is let go for a moment, so the
# event loop answers /healthz and /readyz while a large scrape renders.
_YIELD_EVERY = 2000


def _attach_exemplars(family: Family, first: int, point: Any) -> None:
    # The samples just written for ``point`` start at ``first``. Each exemplar
    # goes on the bucket holding its value (the latest one wins); a counter's on
    # its sample, an exponential histogram's on its one (+Inf) bucket. Gauges
    # carry none in OpenMetrics.
    written = len(family.suffixes) - first
    bounds = None
    if isinstance(point, HistogramDataPoint):
        if written < len(point.bucket_counts):
            return  # a series repeated across merged metrics: kept once, unmarked
        bounds = point.explicit_bounds
    elif not written or not (
        isinstance(point, ExponentialHistogramDataPoint) or family.type == "counter"
    ):
        return
    if family.exemplars is None:
        family.exemplars = {}
    for at, exemplar in latest_by_bucket(point.exemplars, bounds).items():
        family.exemplars[first + at] = exemplar_text(exemplar)


def _label_pairs(names: Sequence[str], values: Sequence[str]) -> list[tuple[str, str]]:
    return sorted(zip(names, values, strict=False))


class DirectEncoder(EncoderOptions):
    """
    Encodes collections; keeps each series' label block between scrapes.
    """

    def _start_caches(self) -> None:
        # Caches kept between scrapes; each scrape keeps only what it used.
        self._cache: dict[int, Series] = {}
        self._next_cache: dict[int, Series] = {}
        self._scopes: dict[int, Scope] = {}
        self._next_scopes: dict[int, Scope] = {}
        self._blocks: dict[Any, Series] = {}
        self._next_blocks: dict[Any, Series] = {}
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
        families = without_clashes(list(self._families(data)), self._on_clash)
        self._cache, self._next_cache = self._next_cache, {}
        self._scopes, self._next_scopes = self._next_scopes, {}
        self._blocks, self._next_blocks = self._next_blocks, {}
        if len(self._interned) > 4 * len(self._cache) + 1024:
            self._interned = {}
        writer = write_openmetrics if fmt is Format.OPENMETRICS else write_text
        return writer(families)

    # -- translation ------------------------------------------------------------

    def _families(self, data: MetricsData) -> Iterator[Family]:
        families: dict[str, Family] = {}
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

    def _target(self, data: MetricsData) -> Family:
        attributes: dict[str, Any] = {}
        for rm in data.resource_metrics:
            attributes = {**attributes, **rm.resource.attributes}
        labels = {sanitize_attribute(k): v for k, v in attributes.items()}
        block = label_block(sorted((k, v) for k, v in labels.items()))
        family = Family(_TARGET_NAME, "info", _TARGET_HELP, "", tuple(labels))
        family.add("_info", block, "1.0")
        return family

    def _scope(self, scope: Any) -> Scope:
        found = self._scopes.get(id(scope))
        if found is None or found.scope is not scope:
            attrs = scope_labels(scope) if self._scope_labels else {}
            found = Scope(scope, attrs)
        self._next_scopes[id(scope)] = found
        return found

    def _translate(
        self, metric: Metric, scope: Scope, families: dict[str, Family]
    ) -> int:
        found = identity(metric)
        if found is None:
            return 0
        points: Sequence[Any] = metric.data.data_points
        series = [self._series(p.attributes, scope) for p in points]
        first = series[0].keys if series else ()
        uniform = all(s.keys is first for s in series)
        keys = (
            first
            if uniform
            else self._intern(tuple(sorted({key for s in series for key in s.keys})))
        )
        family = families.get(found.key)
        if family is None:
            family = Family(found.name, found.kind, found.description, found.unit, keys)
            families[found.key] = family
        family.merging()
        own_blocks = uniform and family.labelnames is keys
        # Two attribute sets can render the same labels ({} and {"route": ""}
        # padded, "k.v" and "k_v" sanitised, 1 and "1"): as on the reference
        # path, the first series keeps them and the family reports a repeat.
        blocks: set[str] = set()
        for point, one in zip(points, series, strict=True):
            if own_blocks:
                labelled = one
            else:
                # Labels missing from a series are empty; a merged metric is zipped
                # against the family's label names by position (the reference's way).
                row = dict(zip(one.keys, one.values, strict=True))
                values = tuple(row.get(k, "") for k in keys)
                labelled = self._aligned(family.labelnames, values)
            if labelled.block in blocks:
                family.repeated = True
                continue
            blocks.add(labelled.block)
            written = len(family.suffixes)
            self._add_point(family, labelled, point)
            if point.exemplars:
                _attach_exemplars(family, written, point)
        return len(points)

    def _intern(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        return self._interned.setdefault(keys, keys)

    def _series(self, attributes: Any, scope: Scope) -> Series:
        # The SDK hands out the same attributes object for a series on every
        # collection: its label block is rendered once and reused while it lives.
        # Keyed by the object's id alone (one int per series, no tuple): the entry
        # holds the object, so the id is not reused while cached; the scope is
        # checked on the hit.
        cache_key = id(attributes)
        found = self._cache.get(cache_key)
        if (
            found is None
            or found.attributes is not attributes
            or found.scope is not scope
        ):
            row = {
                sanitized(k): text(v)
                for k, v in chain(scope.labels.items(), (attributes or {}).items())
            }
            keys = self._intern(tuple(sorted(row)))
            values = tuple(row[k] for k in keys)
            pairs = zip(keys, values, strict=True)
            found = Series(attributes, scope, keys, values, label_block(pairs))
        self._next_cache[cache_key] = found
        return found

    def _aligned(self, names: tuple[str, ...], values: tuple[str, ...]) -> Series:
        key = (names, values)
        found = self._blocks.get(key)
        if found is None:
            pairs = _label_pairs(names, values)
            found = Series(None, None, names, values, label_block(pairs))
        self._next_blocks[key] = found
        return found

    def _add_point(
        self,
        family: Family,
        series: Series,
        point: NumberDataPoint | HistogramDataPoint | Any,
    ) -> None:
        block = series.block
        if isinstance(point, ExponentialHistogramDataPoint):
            # The text formats have no exponential buckets: the count, the sum
            # and the +Inf bucket (as client_golang writes a native histogram).
            # Converting to explicit buckets would make series come and go as
            # the scale moves; a protobuf scrape gets the buckets.
            before, after = series.around_le()
            joined = ",".join(part for part in (before, 'le="+Inf"', after) if part)
            family.add("_bucket", joined, number(point.count))
            family.add("_count", block, number(point.count))
            if not any(point.negative.bucket_counts):
                family.add("_sum", block, number(point.sum))
            return
        if not isinstance(point, HistogramDataPoint):
            suffix = "_total" if family.type == "counter" else ""
            family.add(suffix, block, number(point.value))
            return
        before, after = series.around_le()
        total = 0
        les = self._les(point.explicit_bounds)
        for le, count in zip(les, point.bucket_counts, strict=False):
            total += count
            joined = ",".join(part for part in (before, le, after) if part)
            family.add("_bucket", joined, number(total))
        if float(les[0][4:-1]) >= 0:
            family.add("_count", block, number(total))
            family.add("_sum", block, number(point.sum))

    def _les(self, bounds: Sequence[float]) -> list[str]:
        key = tuple(bounds)
        found = self._le_labels.get(key)
        if found is None:
            found = [
                f'le="{label_value(bound)}"'
                for bound in [*(f"{b}" for b in bounds), "+Inf"]
            ]
            if len(self._le_labels) < 1024:
                self._le_labels[key] = found
        return found
