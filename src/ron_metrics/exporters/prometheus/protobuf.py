"""
The protobuf exposition: ``MetricsData`` → delimited ``io.prometheus.client.MetricFamily``.

Prometheus asks for it first when native histograms are enabled
(``--enable-feature=native-histograms``), and it is the only scrape format that
carries them. Families are named, typed and labelled as in the text formats (one
naming module serves both), with what the protobuf format changes:

- a counter family carries its full sample name (``…_total``); ``target_info`` is
  a gauge (the format has no info type);
- an explicit histogram lists its finite bounds (Prometheus adds ``+Inf`` from the
  count); an exponential histogram is a native histogram (see
  :mod:`ron_metrics.exporters.prometheus.native`);
- each series carries its own labels (an absent label and an empty one are the same
  to Prometheus, so series of a family are not padded to one label set);
- exemplars: a counter's latest, each classic bucket's latest (with an explicit
  ``+Inf`` bucket when one lies there), a native histogram's list.

Families whose names clash are left out as in the text formats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    MetricsData,
)

from ron_metrics.exporters.prometheus import protowire as pb
from ron_metrics.exporters.prometheus.exposition import (
    latest_by_bucket,
    text,
    without_clashes,
)
from ron_metrics.exporters.prometheus.naming import (
    EncoderOptions,
    identity,
    sanitized,
    scope_labels,
)
from ron_metrics.exporters.prometheus.native import ZERO_THRESHOLD, Spans, to_native

__all__ = ["ProtoEncoder"]

_COUNTER, _GAUGE, _HISTOGRAM = 0, 1, 4
_TYPES = {"counter": _COUNTER, "gauge": _GAUGE, "info": _GAUGE, "histogram": _HISTOGRAM}
_WIRE_SUFFIX = {"counter": "_total", "info": "_info"}
# As in the text encoder: let the event loop run every this many series.
_YIELD_EVERY = 2000


@dataclass(slots=True)
class _Family:
    # ``name`` and ``type`` as the text formats' families have them, so the same
    # clash rule applies.
    name: str
    type: str
    documentation: str
    metrics: list[bytes] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    repeated: bool = False

    def add(self, labels: bytes, value: bytes) -> None:
        if labels in self.seen:
            self.repeated = True  # the same series from a second meter: kept once
            return
        self.seen.add(labels)
        self.metrics.append(labels + value)

    def encode(self) -> bytes:
        head = (
            pb.string_field(1, self.name + _WIRE_SUFFIX.get(self.type, ""))
            + pb.string_field(2, self.documentation)
            + pb.uint_field(3, _TYPES[self.type])
        )
        return pb.delimited(
            head + b"".join(pb.message_field(4, metric) for metric in self.metrics)
        )


def _label_pairs(labels: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(
        pb.message_field(1, pb.string_field(1, name) + pb.string_field(2, value))
        for name, value in sorted(labels)
    )


def _spans(side: Spans, span_number: int, delta_number: int) -> bytes:
    if not side.deltas:
        return b""
    return pb.span_fields(span_number, side.spans) + pb.packed_sint_field(
        delta_number, side.deltas
    )


def _exemplar(exemplar: Any) -> bytes:
    labels = (
        b""
        if exemplar.trace_id is None
        else _label_pairs(
            [
                ("trace_id", f"{exemplar.trace_id:032x}"),
                ("span_id", f"{exemplar.span_id:016x}"),
            ]
        )
    )
    seconds, nanos = divmod(exemplar.time_unix_nano, 1_000_000_000)
    return (
        labels
        + pb.double_field(2, float(exemplar.value))
        + pb.message_field(3, pb.uint_field(1, seconds) + pb.uint_field(2, nanos))
    )


def _explicit(point: HistogramDataPoint) -> bytes:
    body = pb.uint_field(1, point.count) + pb.double_field(2, float(point.sum))
    bounds = point.explicit_bounds
    marked = latest_by_bucket(point.exemplars, bounds) if point.exemplars else {}
    running = 0
    for at, count in enumerate(point.bucket_counts):
        running += count
        exemplar = marked.get(at)
        if at == len(bounds) and exemplar is None:
            break  # +Inf is implied by the count, unless it carries an exemplar
        bucket = pb.uint_field(1, running) + pb.double_field(
            2, float(bounds[at]) if at < len(bounds) else math.inf
        )
        if exemplar is not None:
            bucket += pb.message_field(3, _exemplar(exemplar))
        body += pb.message_field(3, bucket)
    return pb.message_field(7, body)


def _exponential(point: ExponentialHistogramDataPoint) -> bytes | None:
    native = to_native(
        point.scale,
        point.zero_count,
        (point.positive.offset, point.positive.bucket_counts),
        (point.negative.offset, point.negative.bucket_counts),
    )
    if native is None:
        return None
    body = (
        pb.uint_field(1, point.count)
        + pb.double_field(2, float(point.sum))
        + pb.sint_field(5, native.schema)
        + pb.double_field(6, ZERO_THRESHOLD)
        + pb.uint_field(7, native.zero_count)
        + _spans(native.negative, 9, 10)
        + _spans(native.positive, 12, 13)
        + b"".join(pb.message_field(16, _exemplar(e)) for e in point.exemplars)
    )
    return pb.message_field(7, body)


def _value(kind: str, point: Any) -> bytes | None:
    if isinstance(point, ExponentialHistogramDataPoint):
        return _exponential(point)
    if isinstance(point, HistogramDataPoint):
        return _explicit(point)
    value = pb.double_field(1, float(point.value))
    if kind != "counter":
        return pb.message_field(2, value)
    if point.exemplars:
        latest = max(point.exemplars, key=lambda e: e.time_unix_nano)
        value += pb.message_field(2, _exemplar(latest))
    return pb.message_field(3, value)


class ProtoEncoder(EncoderOptions):
    """
    Encodes collections; keeps each series' encoded labels between scrapes.
    """

    def _start_caches(self) -> None:
        self._labels: dict[int, tuple[Any, Any, bytes]] = {}
        self._next_labels: dict[int, tuple[Any, Any, bytes]] = {}

    def encode(self, data: MetricsData) -> bytes:
        """
        The exposition of ``data``. Blocking; call it off the event loop.
        """
        self._next_labels = {}
        families = self._families(data)
        self._labels, self._next_labels = self._next_labels, {}
        kept = without_clashes(families, self._on_clash)
        return b"".join(family.encode() for family in kept)

    def _families(self, data: MetricsData) -> list[_Family]:
        families: dict[str, _Family] = {}
        if self._target_info and data.resource_metrics:
            attributes: dict[str, Any] = {}
            for rm in data.resource_metrics:
                attributes = {**attributes, **rm.resource.attributes}
            target = _Family("target", "info", "Target metadata")
            labels = _label_pairs(
                (sanitized(k), text(v)) for k, v in attributes.items()
            )
            target.add(labels, pb.message_field(2, pb.double_field(1, 1.0)))
            families["target"] = target
        series = 0
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                scope = scope_labels(sm.scope) if self._scope_labels else {}
                for metric in sm.metrics:
                    found = identity(metric)
                    if found is None:
                        continue
                    family = families.get(found.key)
                    if family is None:
                        family = _Family(found.name, found.kind, found.description)
                        families[found.key] = family
                    for point in metric.data.data_points:
                        value = _value(found.kind, point)
                        if value is not None:
                            family.add(self._series(point.attributes, scope), value)
                    series += len(metric.data.data_points)
                    if series >= _YIELD_EVERY:
                        series = 0
                        time.sleep(0)
        return list(families.values())

    def _series(self, attributes: Any, scope: dict[str, Any]) -> bytes:
        # The SDK hands out the same attributes object for a series on every
        # collection: its labels are encoded once while it lives.
        key = id(attributes)
        found = self._labels.get(key)
        if found is None or found[0] is not attributes or found[1] != scope:
            row = {
                sanitized(k): text(v)
                for k, v in [*scope.items(), *(attributes or {}).items()]
            }
            found = (attributes, scope, _label_pairs(row.items()))
        self._next_labels[key] = found
        return found[2]
