"""
The OpenTelemetry → Prometheus native histogram mapping, against the bucket
boundaries themselves (exact arithmetic, independent of the encoder's shifts).
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from prom_proto import expand_spans
from ron_metrics.exporters.prometheus.native import spans_of, to_native


def _expected_native(
    scale: int, offset: int, counts: list[int]
) -> tuple[int, dict[int, int]]:
    # Independent of the encoder: each OpenTelemetry bucket's upper boundary,
    # 2 ** ((i + 1) / 2 ** scale), lies in Prometheus bucket k at schema t when
    # k - 1 < log2(upper) * 2 ** t <= k, i.e. k = ceil((i + 1) * 2 ** t / 2 ** scale).
    schema = min(scale, 8)
    expected: dict[int, int] = {}
    for position, count in enumerate(counts):
        if count:
            ratio = Fraction(offset + position + 1) * Fraction(2) ** schema
            k = math.ceil(ratio / Fraction(2) ** scale)
            expected[k] = expected.get(k, 0) + count
    return schema, expected


class _Span:
    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length


@settings(max_examples=300, deadline=None)
@given(
    scale=st.integers(-4, 20),
    offset=st.integers(-2000, 2000),
    counts=st.lists(st.integers(0, 5), max_size=60),
    zeros=st.integers(0, 3),
)
def test_native_mapping_matches_the_boundaries(
    scale: int, offset: int, counts: list[int], zeros: int
) -> None:
    """Schema, zero count and every bucket as the specification's mapping says."""
    native = to_native(scale, zeros, (offset, counts), (offset, counts[::-1]))
    assert native is not None
    schema, positive = _expected_native(scale, offset, counts)
    _, negative = _expected_native(scale, offset, counts[::-1])
    assert native.schema == schema and native.zero_count == zeros
    for side, expected in ((native.positive, positive), (native.negative, negative)):
        spans = [_Span(offset, length) for offset, length in side.spans]
        assert expand_spans(spans, side.deltas) == expected
        assert all(length > 0 for _, length in side.spans)


def test_a_scale_prometheus_cannot_carry_is_left_out() -> None:
    assert to_native(-5, 0, (0, [1]), (0, [])) is None


def test_gaps_of_up_to_two_buckets_stay_inside_a_span() -> None:
    layout = spans_of([(1, 3), (3, 1), (6, 2), (10, 5)])
    assert layout.spans == ((1, 6), (3, 1))
    assert layout.deltas == (3, -3, 1, -1, 0, 2, 3)
    assert spans_of([]).spans == ()
