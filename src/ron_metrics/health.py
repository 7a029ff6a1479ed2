"""
Liveness and readiness.

Readiness is the AND of named checks and is fail-closed: a check that was declared
but never reported, a check that raises, and a check that reports failure all make
the service not ready, each with its own degraded reason. Liveness only says the
process is alive and serving; it never depends on exporters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HealthRegistry", "HealthSnapshot"]

CheckFn = Callable[[], str | None]
"""A pull check: returns ``None`` when healthy, else a short degraded reason."""


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """
    The readiness verdict at one moment.

    Attributes:
        ready: True only when every check passes.
        degraded: Sorted reasons, one per failing check (``name`` or ``name: detail``).
    """

    ready: bool
    degraded: tuple[str, ...]


_UNKNOWN = object()


class HealthRegistry:
    """
    Named readiness checks: pushed states (:meth:`set`) and pulled callables (:meth:`add_check`).

    Thread-safe; cheap to read from the exposer on every ``/readyz``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, object] = {}
        self._checks: dict[str, CheckFn] = {}

    def declare(self, name: str) -> None:
        """
        Declare a pushed check that is not ready until it is first reported.
        """
        with self._lock:
            self._states.setdefault(name, _UNKNOWN)

    def set(self, name: str, *, ok: bool, detail: str | None = None) -> None:
        """
        Report a pushed check's state; ``detail`` becomes part of the degraded reason.
        """
        with self._lock:
            self._states[name] = None if ok else (detail or "")

    def remove(self, name: str) -> None:
        """
        Forget a check (pushed or pulled); unknown names are ignored.
        """
        with self._lock:
            self._states.pop(name, None)
            self._checks.pop(name, None)

    def add_check(self, name: str, check: CheckFn) -> None:
        """
        Register a pull check, called on every snapshot; it must be fast and non-blocking.
        """
        with self._lock:
            self._checks[name] = check

    def snapshot(self) -> HealthSnapshot:
        """
        Evaluate every check now.
        """
        with self._lock:
            states = dict(self._states)
            checks = dict(self._checks)
        degraded: list[str] = []
        for name, state in states.items():
            if state is _UNKNOWN:
                degraded.append(f"{name}: not yet reported")
            elif state is not None:
                degraded.append(f"{name}: {state}" if state else name)
        for name, check in checks.items():
            try:
                reason = check()
            except Exception as exc:
                degraded.append(f"{name}: check failed ({type(exc).__name__})")
            else:
                if reason is not None:
                    degraded.append(f"{name}: {reason}" if reason else name)
        degraded.sort()
        return HealthSnapshot(ready=not degraded, degraded=tuple(degraded))
