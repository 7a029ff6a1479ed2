"""
Process and CPython runtime metrics, read when a collection asks for them.

Names, units and attributes follow the OpenTelemetry semantic conventions
(``process.*``, ``cpython.gc.*``). Values come straight from the kernel
(``/proc/self``, ``getrusage``, ``getrlimit``) and the interpreter
(``gc.get_stats``): nothing runs on the measurement path, and a collection reads
two small files a few times and lists one directory.

Threads and descriptors keep the conventions' earlier names (``process.threads``,
``process.open_file_descriptors``): the current ones end in ``.count``, which in
Prometheus becomes a gauge ending in ``_count``, a name its linter reserves for
histograms and summaries. Two families the conventions do not define, named in
their style: ``process.open_file_descriptors.limit`` (the soft ``RLIMIT_NOFILE``:
what the count runs out against) and ``cpython.gc.pause.duration`` (how long each
garbage collection held the interpreter, timed by ``gc.callbacks``).

Where ``/proc`` does not exist (not Linux), the families read from it are absent;
the rest still report.

On the fast path (the default) the families are finished metrics handed to the
collection directly, as the fast path's streams are: the SDK's observable
instruments cost four fifths of a collection of them. Otherwise they are the SDK's
observable instruments, which the tests keep as the reference. Pauses are timed
only on the fast path: the callback writes the histogram's cells without taking a
lock, which the SDK's own aggregations cannot offer.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    NumberDataPoint,
    Sum,
)

from ron_metrics._runtime_readings import FAMILIES, Family, uptime
from ron_metrics.fast.bound import single_cell
from ron_metrics.fast.cells import HistogramCell, new_point

__all__ = [
    "GC_PAUSE_BUCKETS",
    "RuntimeMetrics",
    "family_metric",
    "number_point",
    "started_ns",
]

# Seconds: young collections take tens of microseconds, full ones of a large heap
# can take hundreds of milliseconds.
GC_PAUSE_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class FamilySource:
    """
    One family as a finished metric at each collection (the fast path's way).
    """

    def __init__(self, family: Family, start: int) -> None:
        self.family = family
        self.start = start  # when the process started (its totals' start)

    def collect(self, now: int) -> Metric | None:
        """The family's points now, or ``None`` where there is no reading."""
        points = [
            number_point(attributes, value, self.start, now)
            for attributes, value in self.family.read()
        ]
        return family_metric(self.family, points) if points else None

    def reset(self) -> None:
        """In a forked child: its totals start with it."""
        self.start = _process_start_ns()


def number_point(
    attributes: Mapping[str, Any] | None, value: float, start: int, now: int
) -> Any:
    """One cumulative point of a runtime family."""
    return new_point(
        NumberDataPoint,
        attributes=dict(attributes) if attributes else {},
        start_time_unix_nano=start,
        time_unix_nano=now,
        value=value,
        exemplars=[],
    )


def family_metric(family: Family, points: list[Any]) -> Metric:
    """``points`` as ``family``'s metric: a gauge or a cumulative sum."""
    data: Sum | Gauge
    if family.kind == "gauge":
        data = Gauge(data_points=points)
    else:
        data = Sum(
            data_points=points,
            aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=family.kind == "counter",
        )
    return Metric(
        name=family.name, description=family.description, unit=family.unit, data=data
    )


def started_ns(running: float | None, now: int) -> int:
    """When a process ``running`` seconds at ``now`` started (its totals' start)."""
    return now if running is None else now - int(running * 1e9)


def _process_start_ns() -> int:
    return started_ns(uptime(), time.time_ns())


def _observe(meter: Meter, family: Family) -> None:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for attributes, value in family.read()]

    create = {
        "counter": meter.create_observable_counter,
        "updown": meter.create_observable_up_down_counter,
        "gauge": meter.create_observable_gauge,
    }[family.kind]
    create(
        family.name,
        callbacks=[callback],
        unit=family.unit,
        description=family.description,
    )


class RuntimeMetrics:
    """
    The runtime families on one meter; :meth:`close` removes the GC callback.

    Args:
        meter: The meter the families are created on (a fast-path meter takes
            them as finished metrics; any other as observable instruments).
        groups: Which of ``process``, ``gc`` and ``gc_pauses`` to report.
    """

    def __init__(self, meter: Meter, groups: Sequence[str]) -> None:
        self._callback: Callable[[str, dict[str, Any]], None] | None = None
        # The pause histogram's cells, one per generation (empty if not timed).
        self.pause_cells: list[HistogramCell] = []
        add_source = getattr(meter, "add_source", None)
        self.direct = add_source is not None
        started = _process_start_ns() if add_source is not None else 0
        for family in FAMILIES:
            if family.group not in groups:
                continue
            if add_source is not None:
                add_source(FamilySource(family, started))
            else:
                _observe(meter, family)
        # Timed pauses need the fast path's cells (see _gc_pauses).
        self.timing_pauses = "gc_pauses" in groups and self._gc_pauses(meter)

    def _gc_pauses(self, meter: Meter) -> bool:
        histogram = meter.create_histogram(
            "cpython.gc.pause.duration",
            unit="s",
            description="How long each garbage collection held the interpreter.",
            explicit_bucket_boundaries_advisory=GC_PAUSE_BUCKETS,
        )
        found = [
            single_cell(histogram, {"cpython.gc.generation": generation})
            for generation in range(len(gc.get_stats()))
        ]
        cells = [cell for cell in found if cell is not None]
        if len(cells) != len(found):
            return False  # not on the fast path: see the module's docstring
        bounds = cells[0].bounds
        began = [0.0]
        clock = time.perf_counter

        # The callback may run in any thread at any allocation, while that thread
        # holds any lock (a collection's included): it takes none. Collections
        # never overlap, so these are the cells' only writers; a reader may see a
        # pause counted whose sum lands a moment later, never a count lost.
        def on_collection(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                began[0] = clock()
                return
            generation = info.get("generation", -1)
            if not 0 <= generation < len(cells):
                return
            seconds = clock() - began[0]
            cell = cells[generation]
            cell.counts[bisect_left(bounds, seconds)] += 1
            cell.total += seconds
            if seconds < cell.low:  # noqa: PLR1730 - comparisons: no call in a GC callback
                cell.low = seconds
            if seconds > cell.high:  # noqa: PLR1730 - as above
                cell.high = seconds

        self.pause_cells = cells
        self._callback = on_collection
        gc.callbacks.append(on_collection)
        return True

    def close(self) -> None:
        """Stop timing collections (the other families end with their provider)."""
        callback, self._callback = self._callback, None
        if callback is not None and callback in gc.callbacks:
            gc.callbacks.remove(callback)
