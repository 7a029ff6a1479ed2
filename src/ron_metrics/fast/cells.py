"""
The cells of the fast path and the keys that find them.

A cell holds one series' running aggregate under its own lock. Series are told
apart by a key built from the cleaned attributes; ``Typed`` keeps the cells of sets
whose values are equal in Python but different series in OpenTelemetry.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes

from ron_metrics.fast.exponential import Exponential

__all__ = [
    "SCALARS",
    "Cell",
    "HistogramCell",
    "OneTyped",
    "Typed",
    "new_point",
    "series_key",
    "types_of",
]

# Value types whose equality within the same type is identity of the attribute
# value: a set of these, of known types, is exactly one series.
SCALARS = frozenset({str, int, float, bool})


class Cell:
    """
    A counter's, up-down counter's or gauge's running value for one attribute set.

    ``shared`` is its record in the process's multi-process store (in a group).
    """

    __slots__ = ("attributes", "exemplar", "lock", "shared", "start", "value")

    def __init__(self, attributes: Mapping[str, Any], shared: Any = None) -> None:
        self.attributes = attributes
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.value: float = 0
        self.shared = shared
        self.exemplar: Any = None  # the latest exemplar kept (fast.exemplars)

    def reset(self) -> None:
        """Start from zero (a forked child: the parent's counts are the parent's)."""
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.value = 0
        self.exemplar = None


class HistogramCell:
    """
    A histogram's buckets, sum, min and max for one attribute set.

    An exponential histogram's cell keeps its state in ``exponential`` (``shape``
    is its ``(max_size, max_scale)``); ``bounds`` and ``counts`` are then unused.
    """

    __slots__ = (
        "attributes",
        "bounds",
        "counts",
        "exemplars",
        "exponential",
        "high",
        "lock",
        "low",
        "shape",
        "shared",
        "start",
        "total",
    )

    def __init__(
        self,
        attributes: Mapping[str, Any],
        bounds: tuple[float, ...],
        shared: Any = None,
        shape: tuple[int, int] | None = None,
    ) -> None:
        self.attributes = attributes
        self.bounds = bounds
        self.shared = shared
        self.shape = shape
        self.reset()

    def reset(self) -> None:
        """Start from zero."""
        self.lock = threading.Lock()
        self.start = time.time_ns()
        self.counts = [0] * (len(self.bounds) + 1)
        self.total: float = 0
        self.low = math.inf
        self.high = -math.inf
        self.exemplars: Any = (
            None  # kept per bucket, or the latest few (fast.exemplars)
        )
        shape = self.shape
        self.exponential = None if shape is None else Exponential(*shape)


class Typed(dict[Any, "Cell | HistogramCell"]):
    """
    A remembered set holding non-string values: ``1``, ``1.0`` and ``True`` are
    equal in Python but different series, so the cell is chosen by the value types.
    """

    __slots__ = ()


class OneTyped:
    """
    A remembered set of several values with exactly one that is not a string,
    seen so far with one type: the set is that series when that one value has that
    type (the string values matched already: a string equals only a string). Checked
    by one type test instead of a tuple of every value's type; a second type of
    the same values turns it into a :class:`Typed`.
    """

    __slots__ = ("at", "cell", "type", "types")

    def __init__(
        self, at: int, types: tuple[type, ...], cell: Cell | HistogramCell
    ) -> None:
        self.at = at
        self.type = types[at]
        self.types = types
        self.cell = cell


def series_key(attributes: Mapping[str, Any]) -> Any:
    """
    The key telling series apart: for string values the sorted pairs themselves
    (compact, and usually the caller's own spelling); for other scalars the pairs
    with each value's type (1, 1.0 and True are different series); else the SDK's
    typed key. The three shapes can never be equal.
    """
    types = set(map(type, attributes.values()))
    if types <= {str}:
        return tuple(sorted(attributes.items()))
    if types <= SCALARS:
        return ("typed", tuple(sorted((k, type(v), v) for k, v in attributes.items())))
    return _hash_attributes(attributes)


def types_of(values: Iterable[Any]) -> tuple[type, ...]:
    return tuple(map(type, values))


def new_point(cls: type[Any], **fields: Any) -> Any:
    """
    A data point of the SDK's class ``cls`` with ``fields``, filled directly.

    The SDK's data points are frozen dataclasses, whose generated ``__init__``
    costs a guarded setattr per field; a collection makes one per series.
    """
    point = object.__new__(cls)
    vars(point).update(fields)
    return point
