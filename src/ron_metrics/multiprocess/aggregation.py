"""
Aggregations that also write every measurement through to the process's store.

The SDK creates one aggregation per series (after the view's attribute filter and
the cardinality limit: the overflow series gets its own). We let the SDK build it
as usual, then give it a subclass of its own class that, after aggregating in
memory, applies the same update to the series' record in the store. The SDK's
collection code tells aggregations apart with ``isinstance``, which the subclass
keeps true.

The store is looked up on every update through :data:`CURRENT`, so a forked
child, which gets a store of its own, never writes into its parent's file.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics._internal.aggregation import (
    _ExplicitBucketHistogramAggregation,
    _ExponentialBucketHistogramAggregation,
    _LastValueAggregation,
    _SumAggregation,
)
from opentelemetry.sdk.metrics.view import Aggregation

from ron_metrics.multiprocess.exponential_record import ExponentialWriter
from ron_metrics.multiprocess.store import MemberStore, series_key

__all__ = [
    "CURRENT",
    "ExponentialRecord",
    "SharedAggregation",
    "StoreHolder",
    "StoreRecord",
    "exponential_key",
    "fast_record",
]


class StoreHolder:
    """
    The process's current store (``None`` outside a group or while switching).
    """

    store: MemberStore | None = None


CURRENT = StoreHolder()


class StoreRecord:
    """
    A series' record in whichever store is current.
    """

    __slots__ = ("_count", "_initial", "_offset", "_store", "exemplars", "key")

    def __init__(self, key: str, count: int, initial: tuple[float, ...]) -> None:
        self.key = key
        self._count = count
        self._initial = initial
        self._store: MemberStore | None = None
        self._offset = 0
        # The series' exemplar record, made on its first exemplar (fast path).
        self.exemplars: Any = None

    def resolve(self) -> tuple[MemberStore, int] | None:
        store = CURRENT.store
        if store is None:
            return None
        if store is not self._store:
            self._offset = store.slot(self.key, self._count, self._initial)
            self._store = store
        return store, self._offset


class _SharedSum(_SumAggregation):
    _cell: StoreRecord
    _replace: bool  # observable instruments report totals, not increments

    def aggregate(self, measurement: Any, should_sample_exemplar: bool = True) -> None:
        super().aggregate(measurement, should_sample_exemplar)
        if (found := self._cell.resolve()) is not None:
            store, offset = found
            if self._replace:
                store.set(offset, float(measurement.value))
            else:
                store.add(offset, float(measurement.value))


class _SharedLastValue(_LastValueAggregation):
    _cell: StoreRecord

    def aggregate(self, measurement: Any, should_sample_exemplar: bool = True) -> None:
        super().aggregate(measurement, should_sample_exemplar)
        if (found := self._cell.resolve()) is not None:
            store, offset = found
            store.set(offset, float(measurement.value), time.time())


class _SharedHistogram(_ExplicitBucketHistogramAggregation):
    _cell: StoreRecord

    def aggregate(self, measurement: Any, should_sample_exemplar: bool = True) -> None:
        super().aggregate(measurement, should_sample_exemplar)
        if (found := self._cell.resolve()) is not None:
            store, offset = found
            value = float(measurement.value)
            store.observe(offset, bisect_left(self._boundaries, value), value)


class ExponentialRecord:
    """
    An exponential histogram series' record in whichever store is current (its
    writer lives with the store: it moves the record's window).
    """

    __slots__ = ("_shape", "exemplars", "key")

    def __init__(self, key: str, shape: tuple[int, int]) -> None:
        self.key = key
        self._shape = shape
        self.exemplars: Any = None  # as StoreRecord's

    def observe(self, value: float) -> None:
        store = CURRENT.store
        if store is None:
            return
        writer = store.writers.get(self.key)
        if writer is None:
            made = ExponentialWriter(store, self.key, *self._shape)
            writer = store.writers.setdefault(self.key, made)
        writer.observe(value)


class _SharedExponential(_ExponentialBucketHistogramAggregation):
    _cell: ExponentialRecord

    def aggregate(self, measurement: Any, should_sample_exemplar: bool = True) -> None:
        super().aggregate(measurement, should_sample_exemplar)
        self._cell.observe(float(measurement.value))


def exponential_key(
    scope: Any,
    name: str,
    *,
    unit: str,
    description: str,
    shape: tuple[int, int],
    attributes: Any,
) -> str:
    """The store key of an exponential histogram series (both paths)."""
    return series_key(
        scope=(scope.name, scope.version or ""),
        name=name,
        kind="exponential",
        unit=unit or "",
        description=description or "",
        bounds=shape,
        attributes=dict(attributes),
    )


def _kind(instrument: Any, aggregation: Any) -> str | None:
    if isinstance(aggregation, _ExponentialBucketHistogramAggregation):
        return "exponential"
    if isinstance(aggregation, _ExplicitBucketHistogramAggregation):
        return "histogram"
    if isinstance(aggregation, _LastValueAggregation):
        return "gauge"
    if isinstance(aggregation, _SumAggregation):
        synchronous = isinstance(instrument, (Counter, UpDownCounter, Histogram))
        monotonic = isinstance(instrument, (Counter, ObservableCounter))
        return (
            ("counter" if monotonic else "updown")
            if synchronous
            else ("ocounter" if monotonic else "oupdown")
        )
    return None  # dropped: not shared (not exposed either)


def share(instrument: Any, attributes: Any, aggregation: Any, name: str) -> Any:
    """
    Make ``aggregation`` (built by the SDK for one series) write through.
    """
    kind = _kind(instrument, aggregation)
    if kind is None or attributes is None:
        return aggregation
    if kind == "exponential":
        shape = (aggregation._max_size, aggregation._max_scale)
        key = exponential_key(
            instrument.instrumentation_scope,
            name,
            unit=instrument.unit,
            description=instrument.description,
            shape=shape,
            attributes=attributes,
        )
        aggregation.__class__ = _SharedExponential
        aggregation._cell = ExponentialRecord(key, shape)
        return aggregation
    bounds: tuple[float, ...] | None = (
        tuple(aggregation._boundaries) if kind == "histogram" else None
    )
    scope = instrument.instrumentation_scope
    key = series_key(
        scope=(scope.name, scope.version or ""),
        name=name,
        kind=kind,
        unit=instrument.unit or "",
        description=instrument.description or "",
        bounds=bounds,
        attributes=dict(attributes),
    )
    if bounds is not None:
        aggregation.__class__ = _SharedHistogram
        cell = StoreRecord(key, 3 + len(bounds) + 1, (0.0, math.inf, -math.inf))
    elif kind == "gauge":
        aggregation.__class__ = _SharedLastValue
        cell = StoreRecord(key, 2, ())
    else:
        aggregation.__class__ = _SharedSum
        aggregation._replace = kind.startswith("o")
        cell = StoreRecord(key, 1, ())
    aggregation._cell = cell
    return aggregation


class SharedAggregation(Aggregation):
    """
    Wraps a view's aggregation so every series it creates writes through.

    Args:
        inner: The aggregation the view would use on its own.
        name: The stream's name when the view renames it (else the instrument's).
    """

    def __init__(self, inner: Aggregation, name: str | None = None) -> None:
        self._inner = inner
        self._name = name

    # The SDK's aggregation factory hook (pinned in tests/test_contracts.py).
    def _create_aggregation(
        self,
        instrument: Any,
        attributes: Any,
        reservoir_factory: Any,
        start_time_unix_nano: int,
    ) -> Any:
        built = self._inner._create_aggregation(
            instrument, attributes, reservoir_factory, start_time_unix_nano
        )
        return share(instrument, attributes, built, self._name or instrument.name)


_FAST_KINDS = {("sum", True): "counter", ("sum", False): "updown"}


def fast_record(
    *,
    scope: Any,
    name: str,
    kind: str,
    monotonic: bool,
    unit: str,
    description: str,
    bounds: tuple[float, ...],
    attributes: dict[str, Any],
    shape: tuple[int, int] | None = None,
) -> StoreRecord | ExponentialRecord:
    """
    The store record of one fast-path series (same keys as the SDK path's).
    """
    stored = _FAST_KINDS.get((kind, monotonic), kind)
    if shape is not None:
        key = exponential_key(
            scope,
            name,
            unit=unit,
            description=description,
            shape=shape,
            attributes=attributes,
        )
        return ExponentialRecord(key, shape)
    key = series_key(
        scope=(scope.name, scope.version or ""),
        name=name,
        kind=stored,
        unit=unit or "",
        description=description or "",
        bounds=bounds if stored == "histogram" else None,
        attributes=dict(attributes),
    )
    if stored == "histogram":
        return StoreRecord(key, 3 + len(bounds) + 1, (0.0, math.inf, -math.inf))
    return StoreRecord(key, 2 if stored == "gauge" else 1, ())
