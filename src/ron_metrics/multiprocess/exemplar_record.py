"""
Exemplars in a multi-process group: one record per series beside its values.

A series that keeps exemplars gets a second record in its member's store, keyed
like the series with kind ``exemplars`` (the series' own kind and bounds moved
into the bounds field, so the series' key is recovered exactly). It holds a fixed
number of slots — one for a counter, one per bucket of an explicit histogram,
``min(20, max_size)`` for an exponential one — each :data:`SLOT` floats::

    seconds, nanoseconds, value, trace id as four 32-bit parts, span id as two

A slot with ``seconds == 0`` is empty; ids of zero mean the exemplar has none
(the ``always_on`` filter outside a span). Every part is an integer below 2**32
or a finite float, so a float64 holds it exactly. The serving process keeps, per
slot, the most recent exemplar across members; exited members' exemplars are
dropped when their files are compacted (an exemplar points at a recent trace).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import Exemplar

from ron_metrics.multiprocess.aggregation import ExponentialRecord, StoreRecord
from ron_metrics.multiprocess.store import SeriesKey, parsed_key, series_key

__all__ = [
    "EXPONENTIAL_KEPT",
    "KIND",
    "SLOT",
    "ExemplarWriter",
    "combine",
    "decode",
    "encode",
    "exemplar_key",
    "possible",
    "slots_of",
    "target_key",
    "writer_of",
]

KIND = "exemplars"
SLOT = 9
# As the specification's default reservoir for exponential histograms: 20 (or
# fewer when the histogram has fewer buckets).
EXPONENTIAL_KEPT = 20
_PART = 1 << 32
_NANOS = 1_000_000_000


def _rekeyed(key: SeriesKey, kind: str, bounds: Any) -> SeriesKey:
    # ``key``'s series with another kind and bounds, written by the store's own
    # canonical key function (so a round trip gives the same bytes).
    scope, version, name, _, unit, description, _, pairs = parsed_key(key)
    return series_key(
        scope=(scope, version),
        name=name,
        kind=kind,
        unit=unit,
        description=description,
        bounds=bounds,
        attributes=dict(pairs),
    )


def exemplar_key(series: SeriesKey) -> SeriesKey:
    """The key of ``series``' exemplar record."""
    fields = parsed_key(series)
    return _rekeyed(series, KIND, [fields[3], fields[6]])


def target_key(key: SeriesKey) -> SeriesKey:
    """The series an exemplar record's ``key`` belongs to."""
    kind, bounds = parsed_key(key)[6]
    return _rekeyed(key, kind, bounds)


def slots_of(kind: object, bounds: object) -> int | None:
    """How many slots the exemplar record of a ``kind`` series holds; ``None``
    for a kind that keeps none."""
    # Compared, never hashed: a forged key may put a list or a dict here.
    if kind in ("counter", "updown"):
        return 1
    if kind == "histogram" and isinstance(bounds, list):
        return len(bounds) + 1
    if kind == "exponential" and isinstance(bounds, list) and bounds:
        size = bounds[0]
        if isinstance(size, int) and not isinstance(size, bool) and size >= 2:
            return min(EXPONENTIAL_KEPT, size)
    return None


def encode(value: float, at: int, span: Any) -> tuple[float, ...]:
    """One slot for an exemplar taken at ``at`` (ns) under ``span`` (or none)."""
    trace_id = span.trace_id if span is not None else 0
    span_id = span.span_id if span is not None else 0
    return (
        float(at // _NANOS),
        float(at % _NANOS),
        float(value),
        *(float((trace_id >> shift) % _PART) for shift in (96, 64, 32, 0)),
        *(float((span_id >> shift) % _PART) for shift in (32, 0)),
    )


def _whole(part: float, limit: int) -> bool:
    return part.is_integer() and 0 <= part < limit


def possible(values: Sequence[float]) -> bool:
    """Every slot is one an honest member could have written (or empty)."""
    for at in range(0, len(values), SLOT):
        # An empty slot is all zeros, which passes as any other.
        seconds, nanos, value, *ids = values[at : at + SLOT]
        if not (
            _whole(seconds, 1 << 40)
            and _whole(nanos, _NANOS)
            and math.isfinite(value)
            and all(_whole(part, _PART) for part in ids)
        ):
            return False
    return True


def combine(into: list[float], values: Sequence[float]) -> None:
    """Keep, per slot, the more recent of ``into``'s and ``values``' exemplars."""
    for at in range(0, min(len(into), len(values)), SLOT):
        if tuple(values[at : at + 2]) > tuple(into[at : at + 2]):
            into[at : at + SLOT] = values[at : at + SLOT]


def decode(values: Sequence[float]) -> tuple[Exemplar, ...]:
    """The exemplars an exemplar record holds, oldest first."""
    found = []
    for at in range(0, len(values), SLOT):
        slot = values[at : at + SLOT]
        if not slot[0]:
            continue
        parts = [int(part) for part in slot[3:]]
        trace_id = (parts[0] << 96) | (parts[1] << 64) | (parts[2] << 32) | parts[3]
        span_id = (parts[4] << 32) | parts[5]
        found.append(
            Exemplar(
                None,
                slot[2],
                int(slot[0]) * _NANOS + int(slot[1]),
                span_id or None,
                trace_id or None,
            )
        )
    return tuple(sorted(found, key=lambda exemplar: exemplar.time_unix_nano))


class ExemplarWriter:
    """Writes one series' exemplars into its exemplar record."""

    __slots__ = ("_record",)

    def __init__(self, series: SeriesKey, slots: int) -> None:
        self._record = StoreRecord(exemplar_key(series), slots * SLOT, ())

    def write(self, slot: int, value: float, at: int, span: Any) -> None:
        if (found := self._record.resolve()) is not None:
            store, offset = found
            store.set(offset + 8 * SLOT * slot, *encode(value, at, span))


def writer_of(shared: StoreRecord | ExponentialRecord) -> ExemplarWriter:
    """The exemplar writer of the series ``shared`` writes (made once)."""
    writer: ExemplarWriter | None = shared.exemplars
    if writer is None:
        fields = parsed_key(shared.key)
        slots = slots_of(fields[3], fields[6]) or 1  # a gauge never gets here
        writer = shared.exemplars = ExemplarWriter(shared.key, slots)
    return writer
