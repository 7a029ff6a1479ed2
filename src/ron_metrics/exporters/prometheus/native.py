"""
An OpenTelemetry base-2 exponential histogram as a Prometheus native histogram.

The mapping the OpenTelemetry specification gives (Prometheus compatibility):

- the scale is the schema; Prometheus takes schemas -4 … 8, so a finer scale is
  downscaled to 8 by merging ``2 ** (scale - 8)`` neighbouring buckets (index
  ``i`` becomes ``i >> (scale - 8)``, exact: the boundaries of the coarser scale
  are boundaries of the finer one); a scale below -4 cannot be carried and the
  point is left out;
- OpenTelemetry indexes a bucket by its lower boundary, Prometheus by its upper
  one: Prometheus index = OpenTelemetry index + 1;
- the zero bucket keeps its count; its threshold is the specification's default
  ``2 ** -128`` written as ``1e-128`` (the SDK's zero bucket holds exact zeros);
- the dense bucket arrays become spans and deltas (a gap of up to two empty
  buckets stays inside a span: cheaper than a new span).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_SCHEMA",
    "MIN_SCHEMA",
    "ZERO_THRESHOLD",
    "NativeHistogram",
    "Spans",
    "spans_of",
    "to_native",
]

MAX_SCHEMA = 8
MIN_SCHEMA = -4
ZERO_THRESHOLD = 1e-128
# Empty buckets a span may carry rather than starting a new span.
_MAX_GAP_IN_SPAN = 2


@dataclass(frozen=True, slots=True)
class Spans:
    """
    One side's buckets in Prometheus' sparse layout.

    ``spans`` are (offset, length) pairs: the first offset is the first bucket's
    index, each later one the number of empty buckets since the previous span.
    ``deltas`` are the bucket counts, each as the difference to the one before.
    """

    spans: tuple[tuple[int, int], ...] = ()
    deltas: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NativeHistogram:
    schema: int
    zero_count: int
    positive: Spans
    negative: Spans


def _downscaled(
    offset: int, counts: Sequence[int], shift: int
) -> list[tuple[int, int]]:
    # (OpenTelemetry index, count) of every non-empty bucket, merged by ``shift``.
    merged: dict[int, int] = {}
    for position, count in enumerate(counts):
        if count:
            index = (offset + position) >> shift
            merged[index] = merged.get(index, 0) + count
    return sorted(merged.items())


def spans_of(buckets: Sequence[tuple[int, int]]) -> Spans:
    """
    The sparse layout of (Prometheus index, count) pairs, sorted by index, no zeros.
    """
    spans: list[list[int]] = []
    counts: list[int] = []
    previous = 0
    for index, count in buckets:
        gap = index - previous - 1
        if spans and gap <= _MAX_GAP_IN_SPAN:
            counts.extend([0] * gap)
            spans[-1][1] += gap + 1
        else:
            spans.append([index if not spans else gap, 1])
        counts.append(count)
        previous = index
    deltas = tuple(
        count - (counts[i - 1] if i else 0) for i, count in enumerate(counts)
    )
    return Spans(tuple((offset, length) for offset, length in spans), deltas)


def to_native(
    scale: int,
    zero_count: int,
    positive: tuple[int, Sequence[int]],
    negative: tuple[int, Sequence[int]],
) -> NativeHistogram | None:
    """
    The native histogram of one data point, or ``None`` when its scale is too
    coarse for Prometheus. ``positive`` and ``negative`` are (offset, counts).
    """
    if scale < MIN_SCHEMA:
        return None
    shift = max(0, scale - MAX_SCHEMA)
    sides = []
    for offset, counts in (positive, negative):
        merged = _downscaled(offset, counts, shift)
        sides.append(spans_of([(index + 1, count) for index, count in merged]))
    return NativeHistogram(scale - shift, zero_count, sides[0], sides[1])
