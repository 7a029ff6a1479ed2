"""
The data points of a fast histogram stream's cells, explicit or exponential.

Built the way the SDK builds them (same fields), filled directly.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import (
    Buckets,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
)

from ron_metrics.fast.cells import HistogramCell, new_point
from ron_metrics.fast.exemplars import exemplars_of

__all__ = ["exponential_point", "histogram_point"]


def histogram_point(cell: HistogramCell, bounds: tuple[float, ...], now: int) -> Any:
    with cell.lock:
        counts = tuple(cell.counts)
        total, low, high = cell.total, cell.low, cell.high
        kept = cell.exemplars
    return new_point(
        HistogramDataPoint,
        attributes=cell.attributes,
        start_time_unix_nano=cell.start,
        time_unix_nano=now,
        count=sum(counts),
        sum=total,
        bucket_counts=counts,
        explicit_bounds=bounds,
        min=low,
        max=high,
        exemplars=exemplars_of(kept),
    )


def exponential_point(cell: HistogramCell, now: int) -> Any:
    state: Any = cell.exponential
    with cell.lock:
        collected = state.collect()
        positive, negative = collected.positive.dense(), collected.negative.dense()
        total, low, high = cell.total, cell.low, cell.high
        count, scale, zero_count = (
            collected.count,
            collected.scale,
            collected.zero_count,
        )
        kept = cell.exemplars
    return new_point(
        ExponentialHistogramDataPoint,
        attributes=cell.attributes,
        start_time_unix_nano=cell.start,
        time_unix_nano=now,
        count=count,
        sum=total,
        scale=scale,
        zero_count=zero_count,
        positive=Buckets(offset=positive[0], bucket_counts=positive[1]),
        negative=Buckets(offset=negative[0], bucket_counts=negative[1]),
        flags=0,
        min=low,
        max=high,
        exemplars=exemplars_of(kept),
    )
