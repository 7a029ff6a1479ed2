"""
Cardinality accounting: ``rejected_total{reason="cardinality"}``.

What it counts: the increase of every overflow series (the series with
``otel.metric.overflow=true`` that the SDK fills once an instrument reached its
``max_series``) — for a counter the value added to it, for a histogram the number
of recordings. With the usual ``add(1)`` that is one per measurement refused its
own series. Up-down counters and gauges are not counted (their overflow value can
go down).

The increase is found while a collection is handed to the hub, and written into
that same collection's ``rejected_total`` point, so the scrape that first shows an
overflow series also shows its count; it is then added to the real counter, so
later collections carry it on their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)

from ron_metrics._metrics_data import map_metrics

__all__ = ["OVERFLOW_ATTRIBUTE", "OverflowAccounting"]

OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
REASON = "cardinality"


class OverflowAccounting:
    """
    Finds overflow growth in each collection and reports it in the same collection.

    Args:
        counter_scope: The meter (scope) name of our self-metrics.
        counter_name: The ``rejected_total`` instrument's name (with any prefix).
        add: Adds to the real counter (called with the growth, when there is any).
    """

    def __init__(
        self, counter_scope: str, counter_name: str, add: Callable[[int], None]
    ) -> None:
        self._scope = counter_scope
        self._name = counter_name
        self._add = add
        self._seen: dict[tuple[str, str], float] = {}

    def account(self, data: MetricsData) -> MetricsData:
        """
        ``data`` with this collection's overflow growth added to our counter's point.
        """
        grown = 0.0
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    grown += self._growth(sm.scope.name, metric)
        if not grown:
            return data
        self._add(int(grown))
        return _with_counter_raised(data, self._scope, self._name, grown)

    def _growth(self, scope: str, metric: Metric) -> float:
        points = (
            metric.data.data_points if isinstance(metric.data, Sum | Histogram) else ()
        )
        if isinstance(metric.data, Sum) and not metric.data.is_monotonic:
            return 0.0
        grown = 0.0
        for point in points:
            if not point.attributes or OVERFLOW_ATTRIBUTE not in point.attributes:
                continue
            level = float(
                point.count if isinstance(point, HistogramDataPoint) else point.value
            )
            key = (scope, metric.name)
            grown += max(0.0, level - self._seen.get(key, 0.0))
            self._seen[key] = level
        return grown


def _with_counter_raised(
    data: MetricsData, scope: str, name: str, grown: float
) -> MetricsData:
    def raise_point(point: NumberDataPoint) -> NumberDataPoint:
        if (point.attributes or {}).get("reason") != REASON:
            return point
        return dataclasses.replace(point, value=point.value + int(grown))

    def raise_metric(metric: Metric) -> Metric:
        if metric.name != name or not isinstance(metric.data, Sum):
            return metric
        points = [raise_point(p) for p in metric.data.data_points]
        return dataclasses.replace(
            metric, data=dataclasses.replace(metric.data, data_points=points)
        )

    return map_metrics(
        data,
        lambda sm_scope, metric: (
            raise_metric(metric) if sm_scope.name == scope else metric
        ),
    )
