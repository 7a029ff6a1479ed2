"""
The group's merged series as SDK ``MetricsData``, so the one encoder writes them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ron_metrics.hub import NO_DESCRIPTION
from ron_metrics.multiprocess import exemplar_record as exemplars
from ron_metrics.multiprocess.exponential_record import dense_buckets
from ron_metrics.multiprocess.merge import Merged
from ron_metrics.multiprocess.store import SeriesKey, parsed_key
from ron_metrics.views import SELF_METER_NAME

__all__ = ["GroupData"]

_CUMULATIVE = AggregationTemporality.CUMULATIVE
_MONOTONIC = frozenset({"counter", "ocounter"})


class GroupData:
    """
    Builds ``MetricsData`` from merged series; keeps each series' attributes object
    between scrapes (the encoder caches label blocks by that object).
    """

    def __init__(self, resource: Resource, start_time_unix_nano: int) -> None:
        self._resource = resource
        self._start = start_time_unix_nano
        self._attributes: dict[SeriesKey, Mapping[str, Any]] = {}
        self._scopes: dict[tuple[str, str], InstrumentationScope] = {}

    def build(
        self, merged: Mapping[SeriesKey, Merged], own: Sequence[Metric] = ()
    ) -> MetricsData:
        """
        One ``ResourceMetrics`` with a ``ScopeMetrics`` per meter (ours first);
        ``own`` are metrics of ours made at collection (the members' process values).
        """
        now = time.time_ns()
        metrics: dict[tuple[str, str], dict[tuple[Any, ...], list[Any]]] = {}
        kept: dict[SeriesKey, Mapping[str, Any]] = {}
        marks = _exemplars(merged)
        for key in sorted(merged):
            if merged[key].kind == exemplars.KIND:
                continue
            scope, version, name, kind, unit, description, bounds, pairs = parsed_key(
                key
            )
            attributes = self._attributes.get(key)
            if attributes is None:
                attributes = {k: _attribute(v) for k, v in pairs}
            kept[key] = attributes
            identity = (name, kind, unit, description, tuple(bounds or ()))
            points = metrics.setdefault((scope, version), {}).setdefault(identity, [])
            points.append(
                _point(
                    merged[key],
                    attributes,
                    bounds,
                    (self._start, now),
                    marks.get(key, ()),
                )
            )
        self._attributes = kept
        if own:
            metrics.setdefault((SELF_METER_NAME, ""), {})
        scopes = sorted(metrics, key=lambda scope: (scope[0] != SELF_METER_NAME, scope))
        scope_metrics = [
            ScopeMetrics(
                scope=self._scope(name, version),
                metrics=[
                    _metric(identity, points)
                    for identity, points in metrics[(name, version)].items()
                ]
                + (list(own) if (name, version) == (SELF_METER_NAME, "") else []),
                schema_url="",
            )
            for name, version in scopes
        ]
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=self._resource, scope_metrics=scope_metrics, schema_url=""
                )
            ]
        )

    def _scope(self, name: str, version: str) -> InstrumentationScope:
        # The same object every scrape: the encoder caches label blocks by it.
        found = self._scopes.get((name, version))
        if found is None:
            found = self._scopes[(name, version)] = InstrumentationScope(
                name, version or None
            )
        return found


def _exemplars(merged: Mapping[SeriesKey, Merged]) -> dict[SeriesKey, Any]:
    # Each series' exemplars, by its key. A record the guard never saw (an
    # archive, which never holds ours) is checked here: one that is not what a
    # member writes is left out.
    found: dict[SeriesKey, Any] = {}
    for key, value in merged.items():
        if (
            value.kind == exemplars.KIND
            and len(value.values) % exemplars.SLOT == 0
            and exemplars.possible(value.values)
        ):
            with contextlib.suppress(ValueError, TypeError, IndexError):
                found[exemplars.target_key(key)] = exemplars.decode(value.values)
    return found


def _attribute(value: Any) -> Any:
    # JSON turned tuples into lists; attribute sequences are tuples in the SDK.
    return tuple(value) if isinstance(value, list) else value


def _point(
    merged: Merged,
    attributes: Mapping[str, Any],
    bounds: list[float] | None,
    times: tuple[int, int],
    marks: Sequence[Any],
) -> Any:
    start, now = times
    values = merged.values
    if merged.kind == "exponential":
        scale, offset, counts = dense_buckets(values)
        count = int(values[0])
        return ExponentialHistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=count,
            sum=values[1],
            scale=scale,
            zero_count=int(values[4]),
            positive=Buckets(offset=offset, bucket_counts=counts),
            negative=Buckets(offset=0, bucket_counts=[]),
            flags=0,
            min=values[2] if count else 0.0,
            max=values[3] if count else 0.0,
            exemplars=marks,
        )
    if merged.kind == "histogram":
        buckets = [int(count) for count in values[3:]]
        count = sum(buckets)
        return HistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=count,
            sum=values[0],
            bucket_counts=buckets,
            explicit_bounds=list(bounds or ()),
            min=values[1] if count else 0.0,
            max=values[2] if count else 0.0,
            exemplars=marks,
        )
    value = values[0]
    number = int(value) if value.is_integer() and abs(value) < 2**53 else value
    return NumberDataPoint(
        attributes=attributes,
        start_time_unix_nano=start,
        time_unix_nano=now,
        value=number,
        exemplars=marks,
    )


def _metric(identity: tuple[Any, ...], points: list[Any]) -> Metric:
    name, kind, unit, description, _ = identity
    data: Any
    if kind == "histogram":
        data = Histogram(data_points=points, aggregation_temporality=_CUMULATIVE)
    elif kind == "exponential":
        data = ExponentialHistogram(
            data_points=points, aggregation_temporality=_CUMULATIVE
        )
    elif kind == "gauge":
        data = Gauge(data_points=points)
    else:
        data = Sum(
            data_points=points,
            aggregation_temporality=_CUMULATIVE,
            is_monotonic=kind in _MONOTONIC,
        )
    return Metric(
        name=name,
        description=description or NO_DESCRIPTION.format(name),
        unit=unit,
        data=data,
    )
