"""
One metric stream of the fast path: the cells of every attribute set, pre-aggregated.

A stream is what the SDK calls a view-instrument match: the instrument as one view
shapes it (name, description, attribute allowlist, aggregation, cardinality limit).
Everything the SDK decides per measurement is decided here once per attribute set
and remembered: attribute cleaning, the allowlist, the series key, the cardinality
limit and the overflow series. A measurement then finds its cell with one dictionary
lookup and adds to it under that cell's lock.

The rules are the SDK's own, reused where it exposes them (attribute cleaning, the
series key), so both paths make the same series: the test suite runs random
workloads through both and compares the collected data points.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _OVERFLOW_ATTRIBUTES,
    _OVERFLOW_KEY,
    _hash_attributes,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

__all__ = ["Cell", "HistogramCell", "Stream"]

_CUMULATIVE = AggregationTemporality.CUMULATIVE
# Remembered raw attribute sets per stream beyond its series (then forgotten and
# re-learnt): the same series reached with keys in another order, or other spellings.
_ALIAS_SLACK = 4


_NO_EXEMPLARS: tuple[Any, ...] = ()


def _series_key(attributes: Mapping[str, Any]) -> Any:
    """
    The key telling series apart: for string values the sorted pairs themselves
    (compact, and usually the caller's own spelling), else the SDK's typed key
    (1, 1.0 and True are different series). The two shapes can never be equal.
    """
    if all(type(v) is str for v in attributes.values()):
        return tuple(sorted(attributes.items()))
    return _hash_attributes(attributes)


def _point(cls: type[Any], **fields: Any) -> Any:
    # The SDK's data points are frozen dataclasses, whose generated __init__ costs
    # a guarded setattr per field; a collection makes one per series. Same object,
    # filled directly.
    point = object.__new__(cls)
    vars(point).update(fields)
    return point


class Cell:
    """
    A counter's, up-down counter's or gauge's running value for one attribute set.

    ``shared`` is its record in the process's multi-process store (in a group).
    """

    __slots__ = ("attributes", "lock", "shared", "start", "value")

    def __init__(self, attributes: Mapping[str, Any], shared: Any = None) -> None:
        self.attributes = attributes
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.value: float = 0
        self.shared = shared

    def reset(self) -> None:
        """Start from zero (a forked child: the parent's counts are the parent's)."""
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.value = 0


class HistogramCell:
    """
    A histogram's buckets, sum, min and max for one attribute set.
    """

    __slots__ = (
        "attributes",
        "bounds",
        "counts",
        "high",
        "lock",
        "low",
        "shared",
        "start",
        "total",
    )

    def __init__(
        self,
        attributes: Mapping[str, Any],
        bounds: tuple[float, ...],
        shared: Any = None,
    ) -> None:
        self.attributes = attributes
        self.bounds = bounds
        self.shared = shared
        self.reset()

    def reset(self) -> None:
        """Start from zero."""
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.counts = [0] * (len(self.bounds) + 1)
        self.total: float = 0
        self.low = math.inf
        self.high = -math.inf


class Stream:
    """
    The cells of one instrument as one view shapes it.

    Args:
        kind: ``sum``, ``gauge`` or ``histogram``.
        monotonic: For sums: a counter (not an up-down counter).
        attribute_keys: The view's allowlist (``None`` keeps every attribute).
        limit: The cardinality limit: attribute sets beyond it share the overflow cell.
        bounds: Histogram bucket boundaries.
    """

    def __init__(
        self,
        *,
        name: str,
        description: str,
        unit: str,
        kind: str,
        monotonic: bool,
        attribute_keys: frozenset[str] | None,
        limit: int,
        bounds: tuple[float, ...] = (),
        shared: Callable[[str, Mapping[str, Any]], Any] | None = None,
    ) -> None:
        self.name = name
        # In a multi-process group: makes a cell's record in the store.
        self._shared = shared
        self.description = description
        self.unit = unit
        self.kind = kind
        self.monotonic = monotonic
        self._keys = attribute_keys
        self._limit = limit
        self.bounds = bounds
        self._cells: dict[Any, Cell | HistogramCell] = {}
        # Raw attribute tuples already resolved: string-valued ones directly; others
        # with the value types they had (1, 1.0 and True are equal in Python but
        # different series), checked on every hit.
        self.aliases: dict[Any, Cell | HistogramCell] = {}
        self.typed_aliases: dict[
            Any, tuple[Cell | HistogramCell, tuple[type, ...]]
        ] = {}
        self._lock = threading.Lock()

    # -- finding the cell ------------------------------------------------------

    def cell(self, attributes: Mapping[str, Any] | None) -> Cell | HistogramCell:
        """
        The cell ``attributes`` lands in (allowlist, key, limit applied once per set).
        """
        raw = tuple(attributes.items()) if attributes else ()
        try:
            found = self.aliases.get(raw)
            if found is not None:
                return found
            typed = self.typed_aliases.get(raw)
        except TypeError:  # an unhashable value (a list): decided the long way
            return self._resolve(attributes, None)
        if typed is not None and typed[1] == tuple(type(v) for _, v in raw):
            return typed[0]
        return self._resolve(attributes, raw)

    def _resolve(
        self, attributes: Mapping[str, Any] | None, raw: tuple[Any, ...] | None
    ) -> Cell | HistogramCell:
        cleaned: Mapping[str, Any] = (
            _clean_attribute_value(attributes, None)
            if isinstance(attributes, Mapping)
            else {}
        )
        if self._keys is not None:
            cleaned = {k: v for k, v in cleaned.items() if k in self._keys}
        else:
            cleaned = dict(cleaned)
        key = _series_key(cleaned)
        with self._lock:
            found = self._cells.get(key)
            if found is None:
                if len(self._cells) >= self._limit:
                    key = _OVERFLOW_KEY
                    cleaned = dict(_OVERFLOW_ATTRIBUTES)
                    found = self._cells.get(key)
                if found is None:
                    found = self._cells[key] = self._new_cell(cleaned)
            if raw is not None:
                self._remember(raw, found, key)
        return found

    def _remember(
        self, raw: tuple[Any, ...], found: Cell | HistogramCell, key: Any
    ) -> None:
        if raw == key:
            raw = key  # a sorted string-valued set is its own key: one tuple kept
        types = tuple(type(v) for _, v in raw)
        if any(t is tuple or t is list for t in types):
            return  # sequences of mixed types: equal tuples, different series
        if len(self.aliases) + len(self.typed_aliases) > _ALIAS_SLACK * (
            self._limit + 1
        ):
            self.aliases, self.typed_aliases = {}, {}
        if all(t is str for t in types):
            self.aliases[raw] = found
        else:
            self.typed_aliases[raw] = (found, types)

    def _new_cell(self, attributes: Mapping[str, Any]) -> Cell | HistogramCell:
        shared = self._shared(self.kind, attributes) if self._shared else None
        if self.kind == "histogram":
            return HistogramCell(attributes, self.bounds, shared)
        return Cell(attributes, shared)

    # -- collection --------------------------------------------------------------

    def collect(self, now: int) -> Metric | None:
        """
        The stream's cumulative data points, or ``None`` before its first measurement.
        """
        with self._lock:
            cells = list(self._cells.values())
        if not cells:
            return None
        data: Any
        if self.kind == "histogram":
            points = [self._histogram_point(cell, now) for cell in cells]  # type: ignore[arg-type]  # histogram streams hold HistogramCells
            data = Histogram(data_points=points, aggregation_temporality=_CUMULATIVE)
        else:
            # One attribute read is atomic: no lock needed to read a number.
            numbers = [
                _point(
                    NumberDataPoint,
                    attributes=cell.attributes,
                    start_time_unix_nano=cell.start,
                    time_unix_nano=now,
                    value=cell.value,  # type: ignore[union-attr]  # a Cell
                    exemplars=_NO_EXEMPLARS,
                )
                for cell in cells
            ]
            if self.kind == "gauge":
                data = Gauge(data_points=numbers)
            else:
                data = Sum(
                    data_points=numbers,
                    aggregation_temporality=_CUMULATIVE,
                    is_monotonic=self.monotonic,
                )
        return Metric(
            name=self.name, description=self.description, unit=self.unit, data=data
        )

    def _histogram_point(self, cell: HistogramCell, now: int) -> Any:
        with cell.lock:
            counts = tuple(cell.counts)
            total, low, high = cell.total, cell.low, cell.high
        return _point(
            HistogramDataPoint,
            attributes=cell.attributes,
            start_time_unix_nano=cell.start,
            time_unix_nano=now,
            count=sum(counts),
            sum=total,
            bucket_counts=counts,
            explicit_bounds=self.bounds,
            min=low,
            max=high,
            exemplars=_NO_EXEMPLARS,
        )

    def reset(self) -> None:
        """In a forked child: every cell from zero, new locks (bound handles stay valid)."""
        self._lock = threading.Lock()
        for cell in self._cells.values():
            cell.reset()
