"""
Delta temporality computed from cumulative collections (pure, no I/O).
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ron_metrics.exporters._delta import DeltaConverter

START = 1_000


def cumulative(value: float, at: int, start: int = START) -> MetricsData:
    point = NumberDataPoint(
        attributes={"k": "v"},
        start_time_unix_nano=start,
        time_unix_nano=at,
        value=value,
    )
    metric = Metric(
        name="jobs",
        description="",
        unit="",
        data=Sum(
            data_points=[point],
            aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=True,
        ),
    )
    scope = ScopeMetrics(
        scope=InstrumentationScope("app"), metrics=[metric], schema_url=""
    )
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(resource=Resource({}), scope_metrics=[scope], schema_url="")
        ]
    )


def only_point(data: MetricsData) -> NumberDataPoint:
    metric = data.resource_metrics[0].scope_metrics[0].metrics[0]
    assert isinstance(metric.data, Sum)
    assert metric.data.aggregation_temporality is AggregationTemporality.DELTA
    point = metric.data.data_points[0]
    assert isinstance(point, NumberDataPoint)
    return point


class TestDeltaConverter:
    def test_consecutive_exports_tile_the_timeline(self) -> None:
        """Each delta starts where the previous exported point ended."""
        converter = DeltaConverter()
        first, done = converter.convert(cumulative(5, at=2_000))
        done()
        second, done = converter.convert(cumulative(8, at=3_000))
        done()
        assert (only_point(first).value, only_point(first).start_time_unix_nano) == (
            5,
            START,
        )
        assert (only_point(second).value, only_point(second).start_time_unix_nano) == (
            3,
            2_000,
        )

    def test_failed_export_loses_nothing(self) -> None:
        """Without the exported() call, the next delta covers both intervals."""
        converter = DeltaConverter()
        _, done = converter.convert(cumulative(5, at=2_000))
        done()
        converter.convert(cumulative(8, at=3_000))  # export failed: not committed
        retry, _ = converter.convert(cumulative(10, at=4_000))
        assert only_point(retry).value == 5
        assert only_point(retry).start_time_unix_nano == 2_000

    def test_reset_starts_over(self) -> None:
        """A new start time (a reset) sends the whole value since that start."""
        converter = DeltaConverter()
        _, done = converter.convert(cumulative(5, at=2_000))
        done()
        after_reset, _ = converter.convert(cumulative(2, at=3_000, start=2_500))
        assert only_point(after_reset).value == 2
        assert only_point(after_reset).start_time_unix_nano == 2_500
