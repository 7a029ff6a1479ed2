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

import operator
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _OVERFLOW_ATTRIBUTES,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    Metric,
    NumberDataPoint,
    Sum,
)

from ron_metrics.fast.cells import (
    SCALARS,
    Cell,
    HistogramCell,
    OneTyped,
    Typed,
    new_point,
    series_key,
    types_of,
)
from ron_metrics.fast.exemplars import exemplars_of
from ron_metrics.fast.points import exponential_point, histogram_point

__all__ = ["Cell", "HistogramCell", "Stream", "Typed"]

_CUMULATIVE = AggregationTemporality.CUMULATIVE
# Remembered spellings per stream beyond one per series (another key order, a
# dropped attribute): once this many are kept, further ones are resolved each
# time instead of remembered — the memory stays bounded and nothing is wiped.
_SPARE_PER_SERIES = 4
# The overflow series under our own series key: a caller who spells the overflow
# set itself before the limit made the same series (one cell, as in the SDK).
_OVERFLOW_SERIES = series_key(_OVERFLOW_ATTRIBUTES)


class Stream:
    """
    The cells of one instrument as one view shapes it.

    Args:
        kind: ``sum``, ``gauge`` or ``histogram``.
        monotonic: For sums: a counter (not an up-down counter).
        attribute_keys: The view's allowlist (``None`` keeps every attribute).
        limit: The cardinality limit: attribute sets beyond it share the overflow cell.
        bounds: Histogram bucket boundaries.
        shape: An exponential histogram's ``(max_size, max_scale)``.
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
        shape: tuple[int, int] | None = None,
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
        self.shape = shape
        self._cells: dict[Any, Cell | HistogramCell] = {}
        self._overflow: Cell | HistogramCell | None = None
        # Remembered sets, each to a cell (string values) or a Typed (others):
        # ``kept`` by the values of the allowlisted keys (in sorted key order), for
        # calls passing every one of them in a dict — whatever else they pass, so a
        # dropped attribute that varies costs nothing; ``aliases`` by the caller's
        # own spelling, for every other call.
        self.kept: dict[Any, Cell | HistogramCell | Typed | OneTyped] = {}
        self.aliases: dict[Any, Cell | HistogramCell | Typed] = {}
        self._spare = _SPARE_PER_SERIES * (limit + 1)
        names = sorted(attribute_keys) if attribute_keys else ()
        self._names = names
        self.getter: Callable[[Mapping[str, Any]], Any] | None = (
            operator.itemgetter(*names) if names else None
        )
        # One allowlisted key: the getter answers the value itself, not a tuple.
        self.single = len(names) == 1
        self._types_of_kept: Callable[[Any], Any] = type if self.single else types_of
        self._lock = threading.Lock()

    # -- finding the cell ------------------------------------------------------

    def cell(self, attributes: Mapping[str, Any] | None) -> Cell | HistogramCell:
        """
        The cell ``attributes`` lands in (allowlist, key, limit applied once per set).
        """
        getter = self.getter
        if getter is not None and attributes.__class__ is dict:
            try:
                key = getter(attributes)
                entry = self.kept.get(key)
            except (KeyError, TypeError):  # a kept key absent; an unhashable value
                pass
            else:
                return self.find_kept(attributes, key, entry)
        try:
            raw = tuple(attributes.items()) if attributes else ()
            entry = self.aliases.get(raw)
        except TypeError:  # an unhashable value (a list): decided the long way
            return self._resolve(attributes)
        return self.find_raw(attributes, raw, entry)

    def find_kept(
        self,
        attributes: Any,
        key: Any,
        entry: Cell | HistogramCell | Typed | OneTyped | None,
    ) -> Cell | HistogramCell:
        """The cell of a call that passed every allowlisted key (``key``: their values)."""
        if entry is None:
            return self._not_remembered(attributes, key)
        if isinstance(entry, OneTyped):
            if type(key[entry.at]) is entry.type:
                return entry.cell
        elif isinstance(entry, Typed):
            found = entry.get(self._types_of_kept(key))
            if found is not None:
                return found
        else:
            return entry
        return self._not_remembered(attributes, key)

    def _not_remembered(self, attributes: Any, key: Any) -> Cell | HistogramCell:
        # Past the limit, a set of plain values not remembered is a new series
        # (every series with these keys is remembered under its values): the
        # overflow's, decided by one C-level type check.
        if self._overflow is not None and (
            type(key) in SCALARS if self.single else SCALARS.issuperset(map(type, key))
        ):
            return self._overflow
        return self._resolve(attributes)

    def find_raw(
        self,
        attributes: Any,
        raw: tuple[Any, ...],
        entry: Cell | HistogramCell | Typed | None,
    ) -> Cell | HistogramCell:
        """The cell of any other call (``raw``: its attributes as it spelled them)."""
        if entry is not None:
            if not isinstance(entry, Typed):
                return entry
            found = entry.get(types_of(attributes.values()))
            if found is not None:
                return found
        if self._overflow is not None and (known := self._known(attributes)):
            # At the limit: a plain set is looked up by its series key, without
            # the SDK's cleaning; one that is not a series is the overflow's.
            return known
        found, key = self._resolve_keyed(attributes)
        if found is not self._overflow:
            # A sorted, all-string spelling is its own series key: one tuple for both.
            self._remember_raw(key if raw == key else raw, attributes, found)
        return found

    def _known(self, attributes: Any) -> Cell | HistogramCell | None:
        if (
            self._keys is not None
            or attributes.__class__ is not dict
            or not set(map(type, attributes)) <= {str}
            or "" in attributes
            or not set(map(type, attributes.values())) <= SCALARS
        ):
            return None
        return self._cells.get(series_key(attributes)) or self._overflow

    def _resolve(self, attributes: Mapping[str, Any] | None) -> Cell | HistogramCell:
        return self._resolve_keyed(attributes)[0]

    def _resolve_keyed(
        self, attributes: Mapping[str, Any] | None
    ) -> tuple[Cell | HistogramCell, Any]:
        cleaned: Mapping[str, Any] = (
            _clean_attribute_value(attributes, None)
            if isinstance(attributes, Mapping)
            else {}
        )
        if self._keys is not None:
            cleaned = {k: v for k, v in cleaned.items() if k in self._keys}
        else:
            cleaned = dict(cleaned)
        key = series_key(cleaned)
        with self._lock:
            found = self._cells.get(key)
            if found is None:
                if len(self._cells) >= self._limit:
                    found = self._overflow_cell()
                else:
                    found = self._cells[key] = self._new_cell(cleaned)
                    self._remember_kept(cleaned, found)
        return found, key

    def _overflow_cell(self) -> Cell | HistogramCell:
        if self._overflow is None:
            overflow = self._cells.get(_OVERFLOW_SERIES)
            if overflow is None:
                overflow = self._new_cell(dict(_OVERFLOW_ATTRIBUTES))
                self._cells[_OVERFLOW_SERIES] = overflow
            self._overflow = overflow
        return self._overflow

    def _remember_kept(
        self, cleaned: Mapping[str, Any], found: Cell | HistogramCell
    ) -> None:
        # Under the stream lock, for each new series: every series holding all the
        # allowlisted keys with plain values is found by those values from now on.
        names = self._names
        if not names or len(cleaned) != len(names):
            return
        values = tuple(cleaned[name] for name in names)
        types = types_of(values)
        if not set(types) <= SCALARS:
            return
        key = values[0] if len(names) == 1 else values
        if set(types) == {str}:
            self.kept[key] = found
            return
        entry = self.kept.get(key)
        others = [at for at, kind in enumerate(types) if kind is not str]
        if entry is None and len(names) > 1 and len(others) == 1:
            self.kept[key] = OneTyped(others[0], types, found)
            return
        if isinstance(entry, OneTyped):  # a second type of the same values
            entry = self.kept[key] = Typed({entry.types: entry.cell})
        elif not isinstance(entry, Typed):
            entry = self.kept[key] = Typed()
        entry[types[0] if len(names) == 1 else types] = found

    def _remember_raw(
        self, raw: tuple[Any, ...], attributes: Any, found: Cell | HistogramCell
    ) -> None:
        types = types_of(attributes.values()) if attributes else ()
        if tuple in types or list in types:
            return  # sequences of mixed types: equal tuples, different series
        with self._lock:
            if self._spare <= 0:
                return  # bounded: resolved each time from now on, nothing wiped
            self._spare -= 1
            if set(types) <= {str}:
                self.aliases[raw] = found
                return
            entry = self.aliases.get(raw)
            if not isinstance(entry, Typed):
                entry = self.aliases[raw] = Typed()
            entry[types] = found

    def _new_cell(self, attributes: Mapping[str, Any]) -> Cell | HistogramCell:
        shared = self._shared(self.kind, attributes) if self._shared else None
        if self.kind == "histogram":
            return HistogramCell(attributes, self.bounds, shared, self.shape)
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
        if self.kind == "histogram" and self.shape is not None:
            points = [exponential_point(cell, now) for cell in cells]  # type: ignore[arg-type]  # histogram streams hold HistogramCells
            data = ExponentialHistogram(
                data_points=points, aggregation_temporality=_CUMULATIVE
            )
        elif self.kind == "histogram":
            points = [histogram_point(cell, self.bounds, now) for cell in cells]  # type: ignore[arg-type]  # as above
            data = Histogram(data_points=points, aggregation_temporality=_CUMULATIVE)
        else:
            # One attribute read is atomic: no lock needed to read a number.
            numbers = [
                new_point(
                    NumberDataPoint,
                    attributes=cell.attributes,
                    start_time_unix_nano=cell.start,
                    time_unix_nano=now,
                    value=cell.value,  # type: ignore[union-attr]  # a Cell
                    exemplars=()
                    if cell.exemplar is None  # type: ignore[union-attr]  # a Cell
                    else exemplars_of(cell.exemplar),  # type: ignore[union-attr]  # as above
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

    def reset(self) -> None:
        """In a forked child: every cell from zero, new locks (bound handles stay valid)."""
        self._lock = threading.Lock()
        for cell in self._cells.values():
            cell.reset()
