"""
What the process and runtime families cost at collection, against
prometheus_client's default collectors doing the same job.

ron-metrics: one runtime with ``[runtime_metrics]`` on and one with it off, both
otherwise empty; the cost is the difference of their collection times (the hub's
capture), rounds interleaved. prometheus_client: a registry holding its
``ProcessCollector``, ``GCCollector`` and ``PlatformCollector``, collected with
``generate_latest`` — which also encodes, so the peer's figure includes a little
work ours leaves out (a fair upper bound on its side, said here).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from common import Figure
from prometheus_client import CollectorRegistry as PromRegistry
from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from ron_metrics import start
from ron_metrics.multiprocess.member_runtime import MemberRuntime
from ron_metrics.testing import config_for_tests


def _timed(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def measure(calls: int, repeats: int) -> dict[str, Any]:
    """Microseconds per collection: ours on, ours off, the difference, the peer."""
    on = start(config_for_tests(sdk={"fast_path": True}), set_global=False)
    off = start(config_for_tests(runtime_metrics={"enabled": False}), set_global=False)
    registry = PromRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    candidates: dict[str, Callable[[], object]] = {
        "ron-metrics, runtime metrics on": on._hub.capture,
        "ron-metrics, runtime metrics off": off._hub.capture,
        "prometheus_client default collectors (generate_latest)": lambda: (
            generate_latest(registry)
        ),
    }
    try:
        figures = {name: Figure(name, "µs") for name in candidates}
        for fn in candidates.values():
            _timed(fn, max(1, calls // 10))
        for _ in range(repeats):
            for name, fn in candidates.items():
                figures[name].values.append(_timed(fn, calls))
        cost = Figure("runtime metrics per collection", "µs")
        cost.values = [
            with_them - without
            for with_them, without in zip(
                figures["ron-metrics, runtime metrics on"].values,
                figures["ron-metrics, runtime metrics off"].values,
                strict=True,
            )
        ]
        peer = figures["prometheus_client default collectors (generate_latest)"]
        ratios = [
            ours / theirs for ours, theirs in zip(cost.values, peer.values, strict=True)
        ]
        return {
            "figures": figures,
            "cost": cost,
            "ratio_to_peer": statistics.median(ratios),
            "per_member": per_member(max(1, calls // 10), repeats),
        }
    finally:
        on.shutdown()
        off.shutdown()


def per_member(calls: int, repeats: int, members: int = 8) -> Figure:
    """
    In a group, what the serving process spends per live member at a scrape:
    reading its ``/proc/<pid>`` and building its families. The members are real
    processes (idle children of this one).
    """
    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        for _ in range(members)
    ]
    try:
        pids = [child.pid for child in children]
        reader = MemberRuntime()
        assert reader.metrics(pids), "no member could be read (no /proc?)"
        figure = Figure("per group member at a scrape", "µs")
        for _ in range(repeats):
            figure.values.append(_timed(lambda: reader.metrics(pids), calls) / members)
        return figure
    finally:
        for child in children:
            child.kill()
            child.wait()
