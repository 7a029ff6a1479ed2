"""
Each live member's process metrics, read by the serving member at collection.

In a group one process serves the port, so its own process values cannot stand for
the workers'. Instead, at each collection, the serving member reads ``/proc/<pid>``
of every live member (its CPU time, memory, threads, descriptors and their limit,
context switches, uptime) and reports each as the single-process families do, with
the member's ``process.pid`` added. Only live members are read, so an exited
member's series are gone at the next scrape and the series count stays bounded by
the worker count. Group-level families sum what a sum means something for:
``ron_metrics.group.memory.usage`` (resident memory of the live members) and
``ron_metrics.group.members`` (how many are live), read at the scrape; and
``ron_metrics.group.cpu.time``, the CPU time of every member the group ever had. A
sum over live members would fall when a worker exits, which a counter must not do,
so each member publishes its own CPU time into its store file ten times a second
and when it leaves (:class:`OwnCpu`), and the group sums every member's last value,
exited ones included: the total never goes backwards, and a killed member's last
tenth of a second is all it can miss.

A pid is taken from a member file's name, which proves nothing: a process that is
not this user's is never read. The values are the kernel's at the scrape, with no
publishing delay; off Linux there is no ``/proc`` and the families are absent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import Metric

from ron_metrics._runtime_readings import (
    FAMILIES,
    Family,
    MemberReading,
    member_reading,
)
from ron_metrics.multiprocess.aggregation import StoreRecord
from ron_metrics.multiprocess.store import series_key
from ron_metrics.runtime_metrics import family_metric, number_point, started_ns
from ron_metrics.views import SELF_METER_NAME

__all__ = ["GROUP_FAMILIES", "MemberRuntime", "OwnCpu"]

Points = list[tuple[dict[str, Any], float]]


def _none() -> Sequence[tuple[None, float]]:
    return ()


GROUP_FAMILIES = (
    Family(
        "ron_metrics.group.memory.usage", "By",
        "Resident memory of the group's live members, summed.",
        "updown", "process", _none,
    ),
    Family(
        "ron_metrics.group.members", "{process}",
        "Live members of the group.",
        "updown", "process", _none,
    ),
)  # fmt: skip


def _cpu(found: MemberReading) -> Points:
    return [
        ({"cpu.mode": "user"}, found.cpu_user),
        ({"cpu.mode": "system"}, found.cpu_system),
    ]


def _switches(found: MemberReading) -> Points:
    if found.voluntary_switches is None or found.involuntary_switches is None:
        return []
    return [
        ({"process.context_switch.type": "voluntary"}, found.voluntary_switches),
        ({"process.context_switch.type": "involuntary"}, found.involuntary_switches),
    ]


def _single(read: Callable[[MemberReading], float | None]) -> Callable[..., Points]:
    def points(found: MemberReading) -> Points:
        value = read(found)
        return [] if value is None else [({}, value)]

    return points


# How each process family is read from a member (the ``process`` group).
_READERS: dict[str, Callable[[MemberReading], Points]] = {
    "process.cpu.time": _cpu,
    "process.memory.usage": _single(lambda found: found.resident),
    "process.memory.virtual": _single(lambda found: found.virtual),
    "process.open_file_descriptors": _single(lambda found: found.open_fds),
    "process.open_file_descriptors.limit": _single(lambda found: found.fd_limit),
    "process.threads": _single(lambda found: found.threads),
    "process.context_switches": _switches,
    "process.uptime": _single(lambda found: found.uptime),
}


class MemberRuntime:
    """
    The ``process`` families of every live member, per ``process.pid``.
    """

    def __init__(self) -> None:
        self._families = [f for f in FAMILIES if f.name in _READERS]

    def metrics(self, pids: Iterable[int]) -> list[Metric]:
        """Each family over the members in ``pids`` that can be read now."""
        now = time.time_ns()
        readings = [found for pid in pids if (found := member_reading(pid))]
        if not readings:
            return []
        # A member's totals start with it.
        starts = [started_ns(found.uptime, now) for found in readings]
        out = []
        for family in self._families:
            read = _READERS[family.name]
            points = [
                number_point(
                    {**attributes, "process.pid": found.pid}, value, start, now
                )
                for found, start in zip(readings, starts, strict=True)
                for attributes, value in read(found)
            ]
            if points:
                out.append(family_metric(family, points))
        memory, members = GROUP_FAMILIES
        start = min(starts)
        resident = sum(found.resident for found in readings)
        out.append(family_metric(memory, [number_point(None, resident, start, now)]))
        count = len(readings)
        out.append(family_metric(members, [number_point(None, count, start, now)]))
        return out


class OwnCpu:
    """
    This member's CPU time in its store file, as a total that outlives it.

    Stored as an observable counter (each member's latest value; the group sums
    every member's, live or exited), under ``ron_metrics.group.cpu.time``.
    """

    def __init__(self) -> None:
        self._records = {
            mode: StoreRecord(
                series_key(
                    scope=(SELF_METER_NAME, ""),
                    name="ron_metrics.group.cpu.time",
                    kind="ocounter",
                    unit="s",
                    description="CPU seconds of every member the group has had,"
                    " exited ones included.",
                    bounds=None,
                    attributes={"cpu.mode": mode},
                ),
                1,
                (),
            )
            for mode in ("user", "system")
        }

    def publish(self) -> None:
        """Write this process's CPU time now (to whichever store is current)."""
        times = os.times()
        for mode, value in (("user", times.user), ("system", times.system)):
            if (found := self._records[mode].resolve()) is not None:
                store, offset = found
                store.set(offset, value)
