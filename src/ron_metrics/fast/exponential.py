"""
A base-2 exponential histogram for one series, as the OpenTelemetry SDK computes it.

The SDK's aggregation (``_ExponentialBucketHistogramAggregation``) costs several
microseconds a recording on its own path; this is the same algorithm on plain
ints, dicts and one cached scale factor, so a fast-path recording costs little more
than an explicit-bucket one. "The same" is meant exactly — the test suite compares
scale, offsets, bucket and zero counts with the SDK's aggregation on thousands of
random runs, and whole points (count, sum, min, max too) through both paths:

- within a collection interval values are mapped at the current scale (the SDK's
  logarithm mapping above scale 0, its exponent mapping at 0 and below, with its
  subnormal and overflow clamps); a value outside ``max_size`` buckets coarsens the
  scale first, and the scale never comes back up;
- an interval holding only zeros has scale 0;
- count, sum, min and max are kept by the cell (a running sum: the SDK adds
  interval sums, so the last digit can differ after several collections);
- at collection the interval is merged into the cumulative state at the coarser of
  the two scales, coarsened further until both fit in ``max_size`` buckets.

Positive and negative values are counted apart (the fast path's histograms take
no negative values; the negative side stays empty but keeps the SDK's shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import floor, frexp, ldexp, log

__all__ = [
    "MIN_NORMAL",
    "Cumulative",
    "Exponential",
    "Side",
    "index_of",
    "scale_change",
]

_MIN_NORMAL_EXPONENT = -1022
_MAX_NORMAL_EXPONENT = 1023
MIN_NORMAL = 2.2250738585072014e-308
_INVERSE_LN2 = 1 / log(2)


def index_of(value: float, scale: int) -> int:
    """
    The bucket index of ``value`` (> 0, finite) at ``scale``, as the SDK maps it.
    """
    if scale > 0:
        if value <= MIN_NORMAL:
            return (_MIN_NORMAL_EXPONENT << scale) - 1
        mantissa, exponent = frexp(value)
        if mantissa == 0.5:  # an exact power of two: the lower bucket
            return ((exponent - 1) << scale) - 1
        return min(
            floor(log(value) * ldexp(_INVERSE_LN2, scale)),
            ((_MAX_NORMAL_EXPONENT + 1) << scale) - 1,
        )
    if value < MIN_NORMAL:
        lowest = _MIN_NORMAL_EXPONENT >> -scale
        return lowest - 1 if -scale < 2 else lowest
    mantissa, exponent = frexp(value)
    return (exponent - 1 - (mantissa == 0.5)) >> -scale


class Side:
    """
    The buckets of one sign: counts by index and the index range the SDK tracks.

    The range starts at ``0..0`` and only grows, as the SDK's does. A side
    without counts has no range when the merge sizes it, yet its range is kept:
    an interval of only zeros leaves ``0..0`` behind, and that stale range is
    extended by later merges as it is in the SDK.
    """

    __slots__ = ("counts", "end", "start")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.start = 0
        self.end = 0

    def empty_copy(self) -> Side:
        copy = Side()
        copy.start, copy.end = self.start, self.end
        return copy

    def downscale(self, change: int) -> None:
        if change == 0:
            return
        merged: dict[int, int] = {}
        for index, count in self.counts.items():
            coarse = index >> change
            merged[coarse] = merged.get(coarse, 0) + count
        self.counts = merged
        self.start >>= change
        self.end >>= change

    def range_at(self, shift: int) -> tuple[int, int] | None:
        """The range at a scale ``shift`` coarser; ``None`` without counts."""
        if not any(self.counts.values()):
            return None
        return self.start >> shift, self.end >> shift

    def add(self, index: int, count: int) -> None:
        """Count ``count`` at ``index``, growing the range to it."""
        if index < self.start:
            self.start = index
        elif index > self.end:
            self.end = index
        self.counts[index] = self.counts.get(index, 0) + count

    def dense(self) -> tuple[int, list[int]]:
        """(offset, counts) from the first to the last non-empty bucket."""
        counts = self.counts  # holds no zeros: a count is only ever added to
        if not counts:
            return 0, []
        low, high = min(counts), max(counts)
        get = counts.get
        return low, [get(index, 0) for index in range(low, high + 1)]


def scale_change(low: int, high: int, max_size: int) -> int:
    """How many scales coarser ``low..high`` fits in ``max_size`` buckets."""
    change = 0
    while high - low >= max_size:
        high >>= 1
        low >>= 1
        change += 1
    return change


class Exponential:
    """
    One series' buckets: this interval's and the cumulative ones. Callers hold the
    series' lock, and keep the count's companions (sum, min, max) themselves: a
    running sum is what the cell's explicit sibling keeps too.
    """

    __slots__ = (
        "cumulative",
        "factor",
        "interval_scale",
        "mask",
        "max_size",
        "negative",
        "positive",
        "scale",
        "window",
        "zero_count",
    )

    #: ``(factor, mask, low, high, counts)``: a positive value whose index
    #: ``floor(log(value) * factor)`` has a bit under ``mask`` set (not on a
    #: power-of-two boundary) and lies in ``low..high`` is counted by
    #: ``counts[index] += 1`` and nothing else; every other value goes through
    #: :meth:`observe`.
    window: tuple[float, int, int, int, dict[int, int]]

    def __init__(self, max_size: int, max_scale: int) -> None:
        self.max_size = max_size
        self.scale = max_scale  # the mapping's scale: it only ever decreases
        self.factor = ldexp(_INVERSE_LN2, max_scale)
        self.mask = (1 << max_scale) - 1 if max_scale > 0 else 0
        self.cumulative: Cumulative | None = None
        self._new_interval()

    def _new_interval(self) -> None:
        self.positive = Side()
        self.negative = Side()
        self.interval_scale: int | None = None  # None: no value yet this interval
        self.zero_count = 0
        self._refresh()

    def _refresh(self) -> None:
        # What a caller needs to count the usual value itself (see ``window``).
        side = self.positive
        if side.counts:
            self.window = (self.factor, self.mask, side.start, side.end, side.counts)
        else:
            self.window = (self.factor, self.mask, 1, 0, side.counts)  # no range

    def observe(self, value: float) -> None:
        """Count ``value`` (finite) in this interval."""
        if value > 0:
            side = self.positive
        elif value == 0:
            self.zero_count += 1
            if not self.positive.counts and not self.negative.counts:
                self.interval_scale = 0  # only zeros so far: the SDK's scale 0
            return
        else:
            value = -value
            side = self.negative
        scale = self.scale
        index = index_of(value, scale)
        counts = side.counts
        if not counts:  # the interval's first value of this sign starts its range
            side.start = side.end = index
        elif index < side.start:
            if side.end - index >= self.max_size:
                self._coarsen_and_count(value, side, index, side.end)
                return
            side.start = index
        elif index > side.end:
            if index - side.start >= self.max_size:
                self._coarsen_and_count(value, side, side.start, index)
                return
            side.end = index
        self.interval_scale = scale
        counts[index] = counts.get(index, 0) + 1
        if side is self.positive:
            self._refresh()

    def _coarsen_and_count(self, value: float, side: Side, low: int, high: int) -> None:
        # The range would exceed max_size: coarsen both signs, map again, count.
        change = scale_change(low, high, self.max_size)
        self.positive.downscale(change)
        self.negative.downscale(change)
        self.scale -= change
        self.factor = ldexp(_INVERSE_LN2, self.scale)
        self.mask = (1 << self.scale) - 1 if self.scale > 0 else 0
        self.interval_scale = self.scale
        side.add(index_of(value, self.scale), 1)
        self._refresh()

    def collect(self) -> Cumulative:
        """Merge this interval into the cumulative buckets and return those."""
        current = Cumulative(
            positive=self.positive,
            negative=self.negative,
            scale=self.interval_scale,
            zero_count=self.zero_count,
        )
        self._new_interval()
        if self.cumulative is None:
            # The first collection: empty, shaped like the interval.
            self.cumulative = Cumulative(
                positive=current.positive.empty_copy(),
                negative=current.negative.empty_copy(),
                scale=self.scale if current.scale is None else current.scale,
            )
        self.cumulative.merge(current, self.max_size)
        return self.cumulative


@dataclass(slots=True, kw_only=True)
class Cumulative:
    """
    Buckets at one scale: an interval's, or everything so far.
    """

    positive: Side
    negative: Side
    scale: int | None
    zero_count: int = 0

    @property
    def count(self) -> int:
        return (
            self.zero_count
            + sum(self.positive.counts.values())
            + sum(self.negative.counts.values())
        )

    def merge(self, current: Cumulative, max_size: int) -> None:
        """Add ``current`` (an interval) to these buckets."""
        assert self.scale is not None  # noqa: S101 - set at the first collection
        scale = self.scale if current.scale is None else current.scale
        sides = ((self.positive, current.positive), (self.negative, current.negative))
        common = min(self.scale, scale)
        # Each sign's range at the common scale decides how much coarser it must
        # get to fit; the sign that needs more decides for both.
        change = 0
        for before, now in sides:
            ranges = [
                found
                for found in (
                    before.range_at(self.scale - common),
                    now.range_at(scale - common),
                )
                if found is not None
            ]
            if ranges:
                low = min(found[0] for found in ranges)
                high = max(found[1] for found in ranges)
                change = max(change, scale_change(low, high, max_size))
        merged_scale = common - change
        shift = scale - merged_scale
        for before, now in sides:
            before.downscale(self.scale - merged_scale)
            for index, count in now.counts.items():
                if count:
                    before.add(index >> shift, count)
        self.zero_count += current.zero_count
        self.scale = merged_scale
