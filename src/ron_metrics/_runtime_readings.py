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
    "MemberReading",
    "Points",
    "member_reading",
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


def _stat_fields(proc: str = "/proc/self") -> list[bytes] | None:
    stat = _read(proc + "/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    # Index 0 is field 3 of the line.
    return stat[stat.rindex(b")") + 2 :].split()


def memory_bytes(proc: str = "/proc/self") -> tuple[int, int] | None:
    """
    (resident, virtual) bytes of the process, from its ``statm``.
    """
    text = _read(proc + "/statm")
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


def _fd_count(proc: str) -> int | None:
    try:
        return len(os.listdir(proc + "/fd"))
    except OSError:
        return None


def open_fds() -> int | None:
    """
    Open file descriptors, not counting the one used to list them.
    """
    count = _fd_count("/proc/self")
    return None if count is None else count - 1


def _since_boot(start_ticks: bytes) -> float | None:
    if not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - int(start_ticks) / _TICKS


def uptime() -> float | None:
    """
    Seconds since this process started: its start tick against the boot clock.
    """
    fields = _stat_fields()
    return None if fields is None else _since_boot(fields[19])  # field 22: start


@dataclass(frozen=True, slots=True)
class MemberReading:
    """
    What ``/proc/<pid>`` says of another process of this user (one group member).
    """

    pid: int
    cpu_user: float
    cpu_system: float
    resident: int
    virtual: int
    threads: int
    uptime: float | None
    open_fds: int | None
    fd_limit: int | None
    voluntary_switches: int | None
    involuntary_switches: int | None


def _status_fields(text: bytes) -> dict[bytes, bytes]:
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(b":")
        fields[name] = value.strip()
    return fields


def _soft_fd_limit(proc: str) -> int | None:
    text = _read(proc + "/limits")
    for line in (text or b"").splitlines():
        if line.startswith(b"Max open files"):
            soft = line[len(b"Max open files") :].split()[0]
            return int(soft) if soft.isdigit() else None
    return None


def member_reading(pid: int) -> MemberReading | None:
    """
    ``pid``'s process values, or ``None`` if it is gone, unreadable or another
    user's (a name in the group directory is no proof of whose process it is).
    """
    proc = f"/proc/{pid}"
    try:
        return _member_reading(pid, proc)
    except (ValueError, IndexError):  # the process ended part-way through
        return None


def _member_reading(pid: int, proc: str) -> MemberReading | None:
    status = _read(proc + "/status")
    fields = _stat_fields(proc)
    memory = memory_bytes(proc)
    if status is None or fields is None or memory is None:
        return None
    by_name = _status_fields(status)
    uids = by_name.get(b"Uid", b"").split()
    if not uids or uids[0] != str(os.getuid()).encode():
        return None
    voluntary, involuntary = _task_switches(proc)
    return MemberReading(
        pid=pid,
        cpu_user=int(fields[11]) / _TICKS,  # field 14: utime
        cpu_system=int(fields[12]) / _TICKS,  # field 15: stime
        resident=memory[0],
        virtual=memory[1],
        threads=int(fields[17]),
        uptime=_since_boot(fields[19]),
        open_fds=_fd_count(proc),
        fd_limit=_soft_fd_limit(proc),
        voluntary_switches=voluntary,
        involuntary_switches=involuntary,
    )


def _task_switches(proc: str) -> tuple[int | None, int | None]:
    # A process's status counts its main thread only: sum its live threads.
    try:
        tasks = os.listdir(proc + "/task")
    except OSError:
        return None, None
    voluntary = involuntary = 0
    for task in tasks:
        text = _read(f"{proc}/task/{task}/status")
        if text is None:
            continue  # the thread ended meanwhile
        by_name = _status_fields(text)
        voluntary += int(by_name.get(b"voluntary_ctxt_switches", b"0"))
        involuntary += int(by_name.get(b"nonvoluntary_ctxt_switches", b"0"))
    return voluntary, involuntary


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
