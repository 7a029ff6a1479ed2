"""
Shared measuring helpers: interleaved repeats, medians with min/max, progress lines.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ron_metrics.testing import reserved_port


@dataclass
class Figure:
    """One measured quantity: every repeat's value, reported as median [min, max]."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def text(self, digits: int = 1) -> str:
        if not self.values:
            return "n/a"
        return f"{self.median:,.{digits}f} [{min(self.values):,.{digits}f}–{max(self.values):,.{digits}f}]"


class Progress:
    """A one-line-per-step progress display on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        width = 24
        filled = int(width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        print(
            f"[{bar}] {self.done:>3}/{self.total} {elapsed:6.1f}s  {what}",
            file=sys.stderr,
            flush=True,
        )


# The peers' registries hold no process collectors: where ours are compared with
# them, the runtime families stay out too, so both sides do the same work
# (runtime_bench.py measures them against prometheus_client's own collectors).
NO_RUNTIME: dict[str, dict[str, bool]] = {"runtime_metrics": {"enabled": False}}


def ns_per_op(fn: Callable[[int], None], ops: int) -> float:
    """Run ``fn(ops)`` once and return nanoseconds per operation."""
    started = time.perf_counter_ns()
    fn(ops)
    return (time.perf_counter_ns() - started) / ops


def interleave(
    candidates: dict[str, Callable[[int], None]], ops: int, repeats: int, warmup: int
) -> dict[str, Figure]:
    """Measure every candidate round-robin, so drift on a shared machine hits all alike."""
    figures = {name: Figure(name, "ns/op") for name in candidates}
    for fn in candidates.values():
        fn(warmup)
    for _ in range(repeats):
        for name, fn in candidates.items():
            figures[name].values.append(ns_per_op(fn, ops))
    return figures


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def free_port() -> int:
    """
    A loopback port for a server that must be told it: from outside the ephemeral
    range and held for this process (a bound-and-closed port 0 can be handed to the
    next server or connection; the test suite runs these benchmarks beside its own).
    """
    return reserved_port()
