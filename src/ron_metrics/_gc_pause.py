"""
The cyclic garbage collector held off while a scrape's objects are alive.

A collection makes objects in proportion to the series (data points, encoded
slices). Made while the collector runs, they push it into young and then full
collections, and a full collection walks every object the process holds with the
GIL held: ``/healthz`` and the application's requests stall for its duration. The
scrape's objects are acyclic and die by reference counting when it ends, so the
collector has nothing to find in them: it is switched off from the start of a
collection to the end of the last response using it, then back on (only if it was
on: an application that disabled it keeps it disabled).

For the same span the interpreter's switch interval is shortened (to
:data:`SWITCH_INTERVAL`, unless it is already shorter). A collection holds the GIL
for tens of milliseconds; a thread waiting for it — the event loop answering
``/healthz``, the application's own threads — gets it only when the interval ends,
and answering one request takes several such waits. A shorter interval costs
nothing while no thread waits (the GIL is only handed over on request), and gives a
waiting thread its turn within a fraction of a millisecond. An interval the
application set meanwhile is left as it set it.

Process-wide and counted, so overlapping scrapes (two exposers, a switch) share
one pause. A child forked during a pause starts with the collector and the switch
interval as the parent had them before the pause.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

__all__ = ["SWITCH_INTERVAL", "held", "hold", "release"]

# Seconds (the interpreter's default is 0.005).
SWITCH_INTERVAL = 0.0005


class _Pause:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.was_enabled = False
        self.was_interval = sys.getswitchinterval()

    def hold(self) -> None:
        with self.lock:
            if self.holders == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
                self.was_interval = sys.getswitchinterval()
                if self.was_interval > SWITCH_INTERVAL:
                    sys.setswitchinterval(SWITCH_INTERVAL)
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            if self.holders == 0:
                return
            self.holders -= 1
            if self.holders == 0:
                self._restore()

    def _restore(self) -> None:
        if self.was_enabled:
            gc.enable()
        if sys.getswitchinterval() == SWITCH_INTERVAL:  # still ours
            sys.setswitchinterval(self.was_interval)

    def after_fork_in_child(self) -> None:
        # The scrapes holding it live in the parent; the child's collector is what
        # it was before the pause.
        self.lock = threading.Lock()
        if self.holders:
            self._restore()
        self.holders = 0


_PAUSE = _Pause()


def hold() -> None:
    """Start (or join) the pause."""
    _PAUSE.hold()


def release() -> None:
    """Leave the pause; the last one out switches the collector back on if it was on."""
    _PAUSE.release()


def held() -> int:
    """How many scrapes hold the pause now."""
    return _PAUSE.holders


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PAUSE.after_fork_in_child)
