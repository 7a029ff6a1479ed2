"""
Exponential histograms in a multi-process group: one member's record, and the merge.

A member's record (kind ``exponential``; the key's bounds field holds ``[max_size,
max_scale]``) is a window of ``max_size`` buckets at one scale::

    count, sum, min, max, zero count, scale, window start, bucket counts...

A value inside the window costs a few in-place updates. A value outside it makes
the writer place a new window (coarsening the scale if the values no longer fit
in ``max_size`` buckets, as the SDK does) and append the whole record again under
the same key: a reader sees the old record or the complete new one (the last
record of a key in a file wins), never a half-rewritten window.

The group's histogram merges its members' records as the OpenTelemetry data model
says: at the coarsest of their scales, each brought down by dropping low bits of
its bucket indexes, then coarsened further until the union fits ``max_size``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from ron_metrics.fast.exponential import index_of, scale_change

__all__ = [
    "HEADER",
    "ExponentialWriter",
    "combine",
    "dense_buckets",
    "initial_values",
]

# count, sum, min, max, zero count, scale, window start
HEADER = 7
_COUNT, _SUM, _MIN, _MAX, _ZERO, _SCALE, _START = range(HEADER)


def initial_values(max_size: int, max_scale: int) -> list[float]:
    return [0.0, 0.0, math.inf, -math.inf, 0.0, float(max_scale), 0.0] + [
        0.0
    ] * max_size


def _buckets(values: Sequence[float]) -> dict[int, float]:
    start = int(values[_START])
    return {start + i: c for i, c in enumerate(values[HEADER:]) if c}


def _downscaled(counts: dict[int, float], change: int) -> dict[int, float]:
    if not change:
        return counts
    out: dict[int, float] = {}
    for index, count in counts.items():
        out[index >> change] = out.get(index >> change, 0.0) + count
    return out


def _window(
    head: Sequence[float], scale: int, counts: dict[int, float], max_size: int
) -> list[float]:
    # A record for ``counts`` at ``scale``, the window centred on its buckets.
    start = 0
    if counts:
        low, high = min(counts), max(counts)
        start = low - (max_size - (high - low + 1)) // 2
    out = [*head[:_SCALE], float(scale), float(start)] + [0.0] * max_size
    for index, count in counts.items():
        out[HEADER + index - start] = count
    return out


def combine(merged: list[float], values: Sequence[float], max_size: int) -> list[float]:
    """
    Two records (a running merge and one more member's) as one, by the data
    model's rules; the result has the record layout.
    """
    scale = min(int(merged[_SCALE]), int(values[_SCALE]))
    counts = _downscaled(_buckets(merged), int(merged[_SCALE]) - scale)
    for index, count in _downscaled(
        _buckets(values), int(values[_SCALE]) - scale
    ).items():
        counts[index] = counts.get(index, 0.0) + count
    if counts:
        change = scale_change(min(counts), max(counts), max_size)
        counts, scale = _downscaled(counts, change), scale - change
    head = [
        merged[_COUNT] + values[_COUNT],
        merged[_SUM] + values[_SUM],
        min(merged[_MIN], values[_MIN]),
        max(merged[_MAX], values[_MAX]),
        merged[_ZERO] + values[_ZERO],
    ]
    return _window(head, scale, counts, max_size)


def dense_buckets(values: Sequence[float]) -> tuple[int, int, list[int]]:
    """(scale, offset, counts) of a record, from its first to its last bucket."""
    counts = _buckets(values)
    if not counts:
        return int(values[_SCALE]), 0, []
    low, high = min(counts), max(counts)
    return (
        int(values[_SCALE]),
        low,
        [int(counts.get(index, 0.0)) for index in range(low, high + 1)],
    )


class ExponentialWriter:
    """
    One series' record in one member store, and where its window sits.
    """

    def __init__(self, store: Any, key: str, max_size: int, max_scale: int) -> None:
        self._store = store
        self._key = key
        self._max_size = max_size
        self._lock = threading.Lock()
        self._offset = store.slot(
            key, HEADER + max_size, initial_values(max_size, max_scale)
        )
        self._scale = max_scale
        self._start = 0
        self._placed = False

    def observe(self, value: float) -> None:
        """Record ``value`` (finite, not negative)."""
        with self._lock:
            slot = -1  # the zero bucket
            if value:
                index = index_of(value, self._scale)
                if not self._placed or not (
                    self._start <= index < self._start + self._max_size
                ):
                    index = self._place(value, index)
                slot = index - self._start
            self._store.observe_exponential(self._offset, slot, value)

    def _place(self, value: float, index: int) -> int:
        # A new window (and scale, if the buckets no longer fit) for what the
        # record holds plus ``value``, appended as the record's next version.
        values = self._store.values(self._offset, HEADER + self._max_size)
        counts = _buckets(values)
        while True:
            low, high = min([index, *counts]), max([index, *counts])
            change = scale_change(low, high, self._max_size)
            if not change:
                break
            counts = _downscaled(counts, change)
            self._scale -= change
            index = index_of(value, self._scale)
        # The window spans the buckets held and the value's own (empty so far).
        record = _window(values, self._scale, {index: 0.0, **counts}, self._max_size)
        self._start = int(record[_START])
        self._offset = self._store.version(self._key, record)
        self._placed = True
        return index
