"""
What the kernel and the interpreter say of this process, and the families they
fill: each family's name, unit, description, kind and how to read its points.

Readers return nothing where their source is missing (``/proc`` off Linux), so a
family without a reading is simply absent from a collection.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAMILIES",
    "Family",
    "Points",
    "memory_bytes",
    "open_fds",
    "thread_count",
    "uptime",
]

Points = Sequence[tuple[Mapping[str, Any] | None, float]]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# These files are a few hundred bytes; one read of this size takes them whole.
_SMALL = 4096


def _read(path: str) -> bytes | None:
    # Plain descriptors: a collection reads these on every scrape.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, _SMALL)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields() -> list[bytes] | None:
    stat = _read("/proc/self/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    # Index 0 is field 3 of the line.
    return stat[stat.rindex(b")") + 2 :].split()


def memory_bytes() -> tuple[int, int] | None:
    """
    (resident, virtual) bytes of this process, from ``/proc/self/statm``.
    """
    text = _read("/proc/self/statm")
    if text is None:
        return None
    size, resident = text.split()[:2]
    return int(resident) * _PAGE, int(size) * _PAGE


def thread_count() -> int | None:
    """
    Threads of this process (every OS thread, not only Python's).
    """
    fields = _stat_fields()
    return None if fields is None else int(fields[17])  # field 20: num_threads


def open_fds() -> int | None:
    """
    Open file descriptors, not counting the one used to list them.
    """
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return None


def uptime() -> float | None:
    """
    Seconds since this process started: its start tick against the boot clock.
    """
    fields = _stat_fields()
    if fields is None or not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    started = int(fields[19]) / _TICKS  # field 22: start time, ticks after boot
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


@dataclass(frozen=True, slots=True)
class Family:
    """
    One family: ``kind`` is ``counter``, ``updown`` or ``gauge``; ``group`` the
    ``[runtime_metrics] groups`` entry that turns it on.
    """

    name: str
    unit: str
    description: str
    kind: str
    group: str
    read: Callable[[], Points]


def _one(read: Callable[[], float | None]) -> Callable[[], Points]:
    def points() -> Points:
        value = read()
        return () if value is None else ((None, value),)

    return points


def _fd_limit() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _cpu_time() -> Points:
    times = os.times()
    return (({"cpu.mode": "user"}, times.user), ({"cpu.mode": "system"}, times.system))


def _context_switches() -> Points:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (
        ({"process.context_switch.type": "voluntary"}, usage.ru_nvcsw),
        ({"process.context_switch.type": "involuntary"}, usage.ru_nivcsw),
    )


def _gc_stat(field: str) -> Callable[[], Points]:
    def points() -> Points:
        return tuple(
            ({"cpython.gc.generation": generation}, stats[field])
            for generation, stats in enumerate(gc.get_stats())
        )

    return points


def _memory(index: int) -> Callable[[], float | None]:
    def read() -> float | None:
        found = memory_bytes()
        return None if found is None else found[index]

    return read


FAMILIES = (
    Family(
        "process.cpu.time", "s",
        "Total CPU seconds broken down by different states.",
        "counter", "process", _cpu_time,
    ),
    Family(
        "process.memory.usage", "By",
        "The amount of physical memory in use.",
        "updown", "process", _one(_memory(0)),
    ),
    Family(
        "process.memory.virtual", "By",
        "The amount of committed virtual memory.",
        "updown", "process", _one(_memory(1)),
    ),
    Family(
        "process.open_file_descriptors", "{file_descriptor}",
        "Number of file descriptors in use by the process.",
        "updown", "process", _one(open_fds),
    ),
    Family(
        "process.open_file_descriptors.limit", "{file_descriptor}",
        "The soft limit on open file descriptors (RLIMIT_NOFILE).",
        "updown", "process", _one(_fd_limit),
    ),
    Family(
        "process.threads", "{thread}",
        "Process threads count.",
        "updown", "process", _one(thread_count),
    ),
    Family(
        "process.context_switches", "{context_switch}",
        "Number of times the process has been context switched.",
        "counter", "process", _context_switches,
    ),
    Family(
        "process.uptime", "s",
        "The time the process has been running.",
        "gauge", "process", _one(uptime),
    ),
    Family(
        "cpython.gc.collections", "{collection}",
        "The number of times a generation was collected since interpreter start.",
        "counter", "gc", _gc_stat("collections"),
    ),
    Family(
        "cpython.gc.collected_objects", "{object}",
        "The total number of objects collected inside a generation since"
        " interpreter start.",
        "counter", "gc", _gc_stat("collected"),
    ),
    Family(
        "cpython.gc.uncollectable_objects", "{object}",
        "The total number of objects which were found to be uncollectable inside"
        " a generation since interpreter start.",
        "counter", "gc", _gc_stat("uncollectable"),
    ),
)  # fmt: skip
