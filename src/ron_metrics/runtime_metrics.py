"""
Process and CPython runtime metrics, read when a collection asks for them.

Names, units and attributes follow the OpenTelemetry semantic conventions
(``process.*``, ``cpython.gc.*``). Values come straight from the kernel
(``/proc/self``, ``getrusage``, ``getrlimit``) and the interpreter
(``gc.get_stats``): nothing runs on the measurement path, and a collection reads
three small files and one directory listing.

Threads and descriptors keep the conventions' earlier names (``process.threads``,
``process.open_file_descriptors``): the current ones end in ``.count``, which in
Prometheus becomes a gauge ending in ``_count``, a name its linter reserves for
histograms and summaries. Two families the conventions do not define, named in
their style: ``process.open_file_descriptors.limit`` (the soft ``RLIMIT_NOFILE``:
what the count runs out against) and ``cpython.gc.pause.duration`` (how long each
garbage collection held the interpreter, timed by ``gc.callbacks``).

Where ``/proc`` does not exist (not Linux), the families read from it are absent;
the rest still report. Pauses are timed only on the fast path (the default): the
callback writes the histogram's cells without taking a lock, which the SDK's own
aggregations cannot offer.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ron_metrics.fast.cells import HistogramCell
from ron_metrics.fast.instruments import single_cell

__all__ = ["GC_PAUSE_BUCKETS", "RuntimeMetrics"]

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
_PROC = Path("/proc/self")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def memory_bytes() -> tuple[int, int] | None:
    """
    (resident, virtual) bytes of this process, from ``/proc/self/statm``.
    """
    text = _read(_PROC / "statm")
    if text is None:
        return None
    size, resident = text.split()[:2]
    return int(resident) * _PAGE, int(size) * _PAGE


def thread_count() -> int | None:
    """
    Threads of this process (every OS thread, not only Python's).
    """
    text = _read(_PROC / "status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return None


def open_fds() -> int | None:
    """
    Open file descriptors, not counting the one used to list them.
    """
    try:
        return len(os.listdir(_PROC / "fd")) - 1
    except OSError:
        return None


def uptime() -> float | None:
    """
    Seconds since this process started: its start tick against the boot clock.
    """
    stat = _read(_PROC / "stat")
    if stat is None or not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    started = int(fields[19]) / _TICKS  # field 22 of the line: ticks after boot
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


class RuntimeMetrics:
    """
    The runtime families on one meter; :meth:`close` removes the GC callback.

    Args:
        meter: The meter the families are created on.
        groups: Which of ``process``, ``gc`` and ``gc_pauses`` to report.
    """

    def __init__(self, meter: Meter, groups: Sequence[str]) -> None:
        self._callback: Callable[[str, dict[str, Any]], None] | None = None
        # The pause histogram's cells, one per generation (empty if not timed).
        self.pause_cells: list[HistogramCell] = []
        if "process" in groups:
            self._process(meter)
        if "gc" in groups:
            self._gc(meter)
        # Timed pauses need the fast path's cells (see _gc_pauses).
        self.timing_pauses = "gc_pauses" in groups and self._gc_pauses(meter)

    def _process(self, meter: Meter) -> None:
        meter.create_observable_counter(
            "process.cpu.time",
            callbacks=[_cpu_time],
            unit="s",
            description="Total CPU seconds broken down by different states.",
        )
        meter.create_observable_up_down_counter(
            "process.memory.usage",
            callbacks=[_each(lambda: _pick(memory_bytes(), 0))],
            unit="By",
            description="The amount of physical memory in use.",
        )
        meter.create_observable_up_down_counter(
            "process.memory.virtual",
            callbacks=[_each(lambda: _pick(memory_bytes(), 1))],
            unit="By",
            description="The amount of committed virtual memory.",
        )
        meter.create_observable_up_down_counter(
            "process.open_file_descriptors",
            callbacks=[_each(open_fds)],
            unit="{file_descriptor}",
            description="Number of file descriptors in use by the process.",
        )
        meter.create_observable_up_down_counter(
            "process.open_file_descriptors.limit",
            callbacks=[_each(_fd_limit)],
            unit="{file_descriptor}",
            description="The soft limit on open file descriptors (RLIMIT_NOFILE).",
        )
        meter.create_observable_up_down_counter(
            "process.threads",
            callbacks=[_each(thread_count)],
            unit="{thread}",
            description="Process threads count.",
        )
        meter.create_observable_counter(
            "process.context_switches",
            callbacks=[_context_switches],
            unit="{context_switch}",
            description="Number of times the process has been context switched.",
        )
        if uptime() is not None:
            meter.create_observable_gauge(
                "process.uptime",
                callbacks=[_each(uptime)],
                unit="s",
                description="The time the process has been running.",
            )

    def _gc(self, meter: Meter) -> None:
        for name, field, description in (
            (
                "cpython.gc.collections",
                "collections",
                "The number of times a generation was collected since interpreter"
                " start.",
            ),
            (
                "cpython.gc.collected_objects",
                "collected",
                "The total number of objects collected inside a generation since"
                " interpreter start.",
            ),
            (
                "cpython.gc.uncollectable_objects",
                "uncollectable",
                "The total number of objects which were found to be uncollectable"
                " inside a generation since interpreter start.",
            ),
        ):
            meter.create_observable_counter(
                name,
                callbacks=[_gc_stat(field)],
                unit="{collection}" if field == "collections" else "{object}",
                description=description,
            )

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
        """Stop timing collections (the observable families end with their meter)."""
        callback, self._callback = self._callback, None
        if callback is not None and callback in gc.callbacks:
            gc.callbacks.remove(callback)


def _pick(pair: tuple[int, int] | None, index: int) -> int | None:
    return None if pair is None else pair[index]


def _each(
    read: Callable[[], float | None],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        value = read()
        return () if value is None else (Observation(value),)

    return callback


def _fd_limit() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _cpu_time(_options: CallbackOptions) -> Iterable[Observation]:
    times = os.times()
    return (
        Observation(times.user, {"cpu.mode": "user"}),
        Observation(times.system, {"cpu.mode": "system"}),
    )


def _context_switches(_options: CallbackOptions) -> Iterable[Observation]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (
        Observation(usage.ru_nvcsw, {"process.context_switch.type": "voluntary"}),
        Observation(usage.ru_nivcsw, {"process.context_switch.type": "involuntary"}),
    )


def _gc_stat(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return tuple(
            Observation(stats[field], {"cpython.gc.generation": generation})
            for generation, stats in enumerate(gc.get_stats())
        )

    return callback
