"""
The group's totals from its members' store files.

How each kind of series combines across processes:

- counters and histograms (and observable counters): summed over every process
  that ever wrote them, live or exited, so a total never goes backwards when a
  worker dies or is replaced; exponential histograms are merged at the coarsest
  of their scales (see :mod:`ron_metrics.multiprocess.exponential_record`);
- up-down counters (and observable up-down counters): summed over live processes
  only — what an exited worker held (active requests, queue depth) is gone;
- gauges: over live processes, by the configured policy — ``last`` (the most
  recently written value), ``max``, ``min`` or ``sum``;
- exemplars: per slot, the most recent across every process (see
  :mod:`ron_metrics.multiprocess.exemplar_record`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ron_metrics.multiprocess import exemplar_record as exemplars
from ron_metrics.multiprocess.exponential_record import HEADER as EXPONENTIAL_HEADER
from ron_metrics.multiprocess.exponential_record import combine
from ron_metrics.multiprocess.store import SeriesKey, parsed_key

__all__ = ["CUMULATIVE_KINDS", "LIVE_KINDS", "Merged", "kind_of", "merge"]

# Kinds whose totals survive the process that wrote them.
CUMULATIVE_KINDS = frozenset({"counter", "ocounter", "histogram", "exponential"})
LIVE_KINDS = frozenset({"updown", "oupdown", "gauge"})


def kind_of(key: SeriesKey) -> str:
    """
    The kind stored in a series key.
    """
    return str(parsed_key(key)[3])


@dataclass(slots=True)
class Merged:
    """
    One series' combined values (the store layout of its kind).
    """

    kind: str
    values: list[float]
    stamp: float = -math.inf  # gauges: when the chosen value was written


def _combine_gauge(merged: Merged, values: tuple[float, ...], policy: str) -> None:
    value, stamp = values[0], values[1]
    if merged.stamp == -math.inf:
        merged.values, merged.stamp = [value, stamp], stamp
    elif policy == "last":
        if stamp >= merged.stamp:
            merged.values, merged.stamp = [value, stamp], stamp
    elif policy == "max":
        merged.values[0] = max(merged.values[0], value)
    elif policy == "min":
        merged.values[0] = min(merged.values[0], value)
    else:
        merged.values[0] += value


def merge(
    members: Iterable[tuple[bool, Iterable[tuple[SeriesKey, tuple[float, ...]]]]],
    *,
    gauge_policy: str,
) -> dict[SeriesKey, Merged]:
    """
    Combine ``(live, records)`` of every member into one value per series.
    """
    out: dict[SeriesKey, Merged] = {}
    for live, records in members:
        for key, values in records:
            kind = kind_of(key)
            if kind in LIVE_KINDS and not live:
                continue
            merged = out.get(key)
            if kind == "gauge":
                if merged is None:
                    merged = out[key] = Merged(kind, [0.0, 0.0])
                _combine_gauge(merged, values, gauge_policy)
            elif merged is None:
                out[key] = Merged(kind, list(values))
            elif kind == exemplars.KIND:
                exemplars.combine(merged.values, values)
            elif kind == "exponential":
                merged.values = combine(
                    merged.values, values, len(values) - EXPONENTIAL_HEADER
                )
            elif kind == "histogram":
                merged.values[0] += values[0]
                merged.values[1] = min(merged.values[1], values[1])
                merged.values[2] = max(merged.values[2], values[2])
                for index in range(3, len(values)):
                    merged.values[index] += values[index]
            else:
                merged.values[0] += values[0]
    return out
