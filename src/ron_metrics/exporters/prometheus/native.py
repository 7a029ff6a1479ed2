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


def _buckets(offset: int, counts: Sequence[int], shift: int) -> list[tuple[int, int]]:
    # (Prometheus index, count) of every non-empty bucket, merged by ``shift``;
    # Prometheus indexes by the upper boundary: one more than OpenTelemetry.
    if not shift:
        return [
            (offset + position + 1, count)
            for position, count in enumerate(counts)
            if count
        ]
    merged: dict[int, int] = {}
    for position, count in enumerate(counts):
        if count:
            index = ((offset + position) >> shift) + 1
            merged[index] = merged.get(index, 0) + count
    return sorted(merged.items())


def spans_of(buckets: Sequence[tuple[int, int]]) -> Spans:
    """
    The sparse layout of (Prometheus index, count) pairs, sorted by index, no zeros.
    """
    spans: list[tuple[int, int]] = []
    deltas: list[int] = []
    append = deltas.append
    span_offset = length = 0
    previous_index = previous_count = 0
    for index, count in buckets:
        gap = index - previous_index - 1
        if length and gap <= _MAX_GAP_IN_SPAN:
            if gap:
                # Empty buckets inside a span: a drop to zero, then back up.
                append(-previous_count)
                if gap == _MAX_GAP_IN_SPAN:
                    append(0)
                previous_count = 0
            length += gap + 1
        else:
            if length:
                spans.append((span_offset, length))
            span_offset, length = (gap if spans or length else index), 1
        append(count - previous_count)
        previous_index, previous_count = index, count
    if length:
        spans.append((span_offset, length))
    return Spans(tuple(spans), tuple(deltas))


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
        sides.append(spans_of(_buckets(offset, counts, shift)))
    return NativeHistogram(scale - shift, zero_count, sides[0], sides[1])
