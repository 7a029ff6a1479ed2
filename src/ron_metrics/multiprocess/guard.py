"""
What a member file may claim. Anyone who can write the group directory can write a
member file; the merge takes only what an honest member could hold:

- every key is a series key of a known kind with the value layout of that kind
  (else the whole file is skipped, as a file that is not a store file);
- a counter's value, and a histogram's bucket counts, are finite, not negative
  and never below what the same file showed before; a histogram's sum is finite;
  an exponential histogram's count is its buckets' sum and never goes down;
  an exemplar slot is empty or holds whole time and id parts and a finite value.
  A value that is not is refused: the last admitted values of that series stand
  in, so a group total never goes backwards and never becomes NaN.
- across files, the group's counter and histogram totals never go below what a
  collection last reported: a file removed, an archive rewritten, or an archive
  that claims to have absorbed files it does not hold cannot take a total back.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable

from ron_metrics.multiprocess import exemplar_record as exemplars
from ron_metrics.multiprocess.exponential_record import HEADER
from ron_metrics.multiprocess.merge import Merged
from ron_metrics.multiprocess.store import SeriesKey, parsed_key

__all__ = ["TotalsFloor", "ValueGuard", "check_key"]

_SINGLE_VALUE = frozenset({"counter", "ocounter", "updown", "oupdown"})
_MONOTONIC = frozenset({"counter", "ocounter"})
_DISTRIBUTIONS = frozenset({"histogram", "exponential"})


def check_key(key: SeriesKey, values: tuple[float, ...]) -> str:
    """
    The kind of ``key``.

    Raises:
        ValueError: If ``key`` is not a series key, or ``values`` is not the
            layout of its kind.
    """
    try:
        fields = parsed_key(key)
        kind, bounds = fields[3], fields[6]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError("a record's key is not a series key") from exc
    if len(fields) != 8 or not isinstance(kind, str):
        raise ValueError("a record's key is not a series key")
    if kind in _SINGLE_VALUE:
        expected = 1
    elif kind == "gauge":
        expected = 2
    elif kind == "histogram" and isinstance(bounds, list):
        expected = 3 + len(bounds) + 1
    elif kind == "exponential" and _exponential_shape(bounds):
        expected = HEADER + int(bounds[0])
    elif kind == exemplars.KIND and (slots := _exemplar_slots(bounds)):
        expected = slots * exemplars.SLOT
    else:
        raise ValueError(f"a record's key has an unknown kind {kind!r:.32}")
    if len(values) != expected:
        raise ValueError(f"a {kind} record holds {len(values)} values")
    return kind


class ValueGuard:
    """
    The last admitted values of one member file's series, and the refusals.
    """

    def __init__(self) -> None:
        self._last: dict[SeriesKey, tuple[float, ...]] = {}
        self.refused = 0

    def admit(
        self, records: Iterable[tuple[SeriesKey, tuple[float, ...]]]
    ) -> list[tuple[SeriesKey, tuple[float, ...]]]:
        """
        ``records`` with each impossible value replaced by the series' last one.

        Raises:
            ValueError: If a key is malformed (the file is then skipped whole).
        """
        admitted = []
        for key, values in records:
            kind = check_key(key, values)
            last = self._last.get(key)
            if self._possible(kind, values, last):
                self._last[key] = values
                admitted.append((key, values))
                continue
            self.refused += 1
            if last is not None:  # else nothing honest is known for it yet
                admitted.append((key, last))
        return admitted

    def has_values(self) -> bool:
        """True once some values of this file were admitted."""
        return bool(self._last)

    def last_records(self) -> list[tuple[SeriesKey, tuple[float, ...]]]:
        """The last admitted values of every series of this file."""
        return list(self._last.items())

    @staticmethod
    def _possible(
        kind: str, values: tuple[float, ...], last: tuple[float, ...] | None
    ) -> bool:
        layout_check = _LAYOUT_CHECKS.get(kind)
        if layout_check is not None:
            return layout_check(values, last)
        if kind in _MONOTONIC:
            counts: tuple[float, ...] = values
        elif kind == "histogram":
            if not math.isfinite(values[0]):
                return False
            counts = values[3:]
        else:
            return not math.isnan(values[0])
        if not all(math.isfinite(c) and c >= 0 for c in counts):
            return False
        if last is None:
            return True
        before = last if kind in _MONOTONIC else last[3:]
        # Same key, same layout (checked above): the lengths match.
        return all(map(operator.ge, counts, before))


def _exemplar_slots(bounds: object) -> int | None:
    # An exemplar record's key holds [its series' kind, that series' bounds].
    if isinstance(bounds, list) and len(bounds) == 2:
        return exemplars.slots_of(*bounds)
    return None


def _exponential_shape(bounds: object) -> bool:
    # An exponential record's key holds [max_size, max_scale] where bounds go.
    return (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        and 2 <= bounds[0] <= 16384
    )


def _possible_exponential(
    values: tuple[float, ...], last: tuple[float, ...] | None
) -> bool:
    # Finite, not negative; the scale and window start whole numbers in range;
    # the count the sum of the zero and window buckets (a torn read of a value
    # being counted fails this and waits for the next scrape); never below the
    # count this file showed before.
    count, total, zeros, scale, start = (
        values[0],
        values[1],
        values[4],
        values[5],
        values[6],
    )
    buckets = values[HEADER:]
    if not all(math.isfinite(v) and v >= 0 for v in (count, total, zeros, *buckets)):
        return False
    if not (scale.is_integer() and -10 <= scale <= 20):
        return False
    if not (math.isfinite(start) and start.is_integer() and abs(start) < 2**31):
        return False
    if count != zeros + math.fsum(buckets):
        return False
    return last is None or count >= last[0]


class TotalsFloor:
    """
    The group's counter and histogram totals as last reported, which no later
    collection goes below.
    """

    def __init__(self) -> None:
        self._last: dict[SeriesKey, tuple[str, tuple[float, ...]]] = {}
        self._held: set[SeriesKey] = set()

    def hold(self, merged: dict[SeriesKey, Merged]) -> int:
        """
        Put back, in ``merged``, every cumulative total that fell or vanished; the
        number of series newly held (one still held since the last collection is
        not counted again).
        """
        held: set[SeriesKey] = set()
        for key, (kind, last) in self._last.items():
            now = merged.get(key)
            if now is None or not _not_below(kind, now.values, last):
                merged[key] = Merged(kind, list(last))
                held.add(key)
        for key, value in merged.items():
            if value.kind in _MONOTONIC or value.kind in _DISTRIBUTIONS:
                self._last[key] = (value.kind, tuple(value.values))
        newly = len(held - self._held)
        self._held = held
        return newly


def _not_below(kind: str, now: list[float], last: tuple[float, ...]) -> bool:
    if kind == "exponential":
        # Count and sum (buckets move between windows and scales).
        return now[0] >= last[0] and now[1] >= last[1]
    if kind == "histogram":
        # Sum and bucket counts (min and max move both ways between members).
        if len(now) != len(last) or now[0] < last[0]:
            return False
        return all(map(operator.ge, now[3:], last[3:]))
    return now[0] >= last[0]


# Kinds with a layout of their own: their own check of what a member may hold.
_LAYOUT_CHECKS: dict[
    str, Callable[[tuple[float, ...], tuple[float, ...] | None], bool]
] = {
    "exponential": _possible_exponential,
    exemplars.KIND: lambda values, _last: exemplars.possible(values),
}
