"""
Delta temporality for the OTLP sink, computed from the one cumulative collection.

The provider has a single cumulative reader (Prometheus needs cumulative data, and a
second reader would double the cost of every measurement). When the OTLP sink is
asked for ``delta`` (or ``lowmemory``), each export sends, per stream, the change
since the last *successful* export:

- monotonic sums (counters): ``value - previous``, with ``start_time`` set to the
  previous point's time, so consecutive points tile the timeline;
- histograms: count, sum and every bucket count as differences. Min and max stay
  the stream's extremes since it started: the cumulative reader keeps no
  per-interval extremes.

Up-down counters and gauges stay cumulative (the specification's delta and
low-memory preferences both keep them so). A stream seen for the first time, or
whose cumulative value went down or whose start time changed (a reset), starts
over: its delta is its whole value since its own start. The baseline advances only
when an export succeeds, so a failed export loses nothing: the next delta covers
both intervals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)

from ron_metrics._metrics_data import map_metrics

__all__ = ["DeltaConverter"]

_StreamKey = tuple[str, str, frozenset[tuple[str, Any]]]
_Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint


class DeltaConverter:
    """
    Converts cumulative collections to delta against the last exported state.
    """

    def __init__(self) -> None:
        self._exported: dict[_StreamKey, _Point] = {}

    def convert(self, data: MetricsData) -> tuple[MetricsData, Callable[[], None]]:
        """
        The delta form of ``data``, and a callback to call once it was exported.
        """
        seen: dict[_StreamKey, _Point] = {}
        converted = map_metrics(
            data, lambda scope, metric: self._metric(scope.name, metric, seen)
        )

        def exported() -> None:
            # Streams that vanished are forgotten; the rest advance.
            self._exported = seen

        return converted, exported

    def _metric(
        self, scope: str, metric: Metric, seen: dict[_StreamKey, _Point]
    ) -> Metric:
        data = metric.data
        cumulative = AggregationTemporality.CUMULATIVE
        if isinstance(data, Sum) and data.is_monotonic:
            if data.aggregation_temporality is not cumulative:
                return metric
            sums = [self._sum(scope, metric.name, p, seen) for p in data.data_points]
            return dataclasses.replace(
                metric,
                data=Sum(
                    data_points=sums,
                    aggregation_temporality=AggregationTemporality.DELTA,
                    is_monotonic=True,
                ),
            )
        if isinstance(data, Histogram) and data.aggregation_temporality is cumulative:
            points = [
                self._histogram(scope, metric.name, p, seen) for p in data.data_points
            ]
            return dataclasses.replace(
                metric,
                data=Histogram(
                    data_points=points,
                    aggregation_temporality=AggregationTemporality.DELTA,
                ),
            )
        if (
            isinstance(data, ExponentialHistogram)
            and data.aggregation_temporality is cumulative
        ):
            exponential = [
                self._exponential(scope, metric.name, p, seen) for p in data.data_points
            ]
            return dataclasses.replace(
                metric,
                data=ExponentialHistogram(
                    data_points=exponential,
                    aggregation_temporality=AggregationTemporality.DELTA,
                ),
            )
        return metric

    def _previous(
        self, key: _StreamKey, point: _Point, seen: dict[_StreamKey, _Point]
    ) -> _Point | None:
        seen[key] = point
        previous = self._exported.get(key)
        if (
            previous is None
            or type(previous) is not type(point)
            or previous.start_time_unix_nano != point.start_time_unix_nano
        ):
            return None
        return previous

    def _sum(
        self,
        scope: str,
        name: str,
        point: NumberDataPoint,
        seen: dict[_StreamKey, _Point],
    ) -> NumberDataPoint:
        previous = self._previous(_key(scope, name, point), point, seen)
        if not isinstance(previous, NumberDataPoint) or point.value < previous.value:
            return point
        return dataclasses.replace(
            point,
            start_time_unix_nano=previous.time_unix_nano,
            value=point.value - previous.value,
            exemplars=_since(point.exemplars, previous.time_unix_nano),
        )

    def _histogram(
        self,
        scope: str,
        name: str,
        point: HistogramDataPoint,
        seen: dict[_StreamKey, _Point],
    ) -> HistogramDataPoint:
        previous = self._previous(_key(scope, name, point), point, seen)
        if (
            not isinstance(previous, HistogramDataPoint)
            or point.count < previous.count
            or list(point.explicit_bounds) != list(previous.explicit_bounds)
        ):
            return point
        return dataclasses.replace(
            point,
            start_time_unix_nano=previous.time_unix_nano,
            count=point.count - previous.count,
            sum=point.sum - previous.sum,
            exemplars=_since(point.exemplars, previous.time_unix_nano),
            bucket_counts=[
                now - before
                for now, before in zip(
                    point.bucket_counts, previous.bucket_counts, strict=True
                )
            ],
        )

    def _exponential(
        self,
        scope: str,
        name: str,
        point: ExponentialHistogramDataPoint,
        seen: dict[_StreamKey, _Point],
    ) -> ExponentialHistogramDataPoint:
        previous = self._previous(_key(scope, name, point), point, seen)
        # A cumulative exponential histogram only ever coarsens its scale: the
        # previous point is brought to the current scale, then subtracted.
        if (
            not isinstance(previous, ExponentialHistogramDataPoint)
            or point.count < previous.count
            or point.scale > previous.scale
        ):
            return point
        shift = previous.scale - point.scale
        positive = _minus(point.positive, previous.positive, shift)
        negative = _minus(point.negative, previous.negative, shift)
        if positive is None or negative is None:
            return point
        return dataclasses.replace(
            point,
            start_time_unix_nano=previous.time_unix_nano,
            count=point.count - previous.count,
            sum=point.sum - previous.sum,
            exemplars=_since(point.exemplars, previous.time_unix_nano),
            zero_count=point.zero_count - previous.zero_count,
            positive=positive,
            negative=negative,
        )


def _since(exemplars: Sequence[Exemplar], at: int) -> tuple[Exemplar, ...]:
    # A cumulative point keeps its latest exemplars until replaced; a delta
    # carries only those taken within its interval.
    return tuple(e for e in exemplars if e.time_unix_nano > at)


def _minus(now: Buckets, before: Buckets, shift: int) -> Buckets | None:
    # ``now - before`` with ``before`` downscaled by ``shift``; None if ``before``
    # holds counts ``now`` does not (not the same stream after all).
    earlier: dict[int, int] = {}
    for position, count in enumerate(before.bucket_counts):
        if count:
            index = (before.offset + position) >> shift
            earlier[index] = earlier.get(index, 0) + count
    counts = []
    for position, count in enumerate(now.bucket_counts):
        counts.append(count - earlier.pop(now.offset + position, 0))
    if earlier or any(count < 0 for count in counts):
        return None
    return Buckets(offset=now.offset, bucket_counts=counts)


def _key(scope: str, name: str, point: _Point) -> _StreamKey:
    return (scope, name, frozenset((point.attributes or {}).items()))
