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

Process-wide and counted, so overlapping scrapes (two exposers, a switch) share
one pause. A child forked during a pause starts with the collector as the parent
had it before the pause.
"""

from __future__ import annotations

import gc
import os
import threading

__all__ = ["held", "hold", "release"]


class _Pause:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.was_enabled = False

    def hold(self) -> None:
        with self.lock:
            if self.holders == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            if self.holders == 0:
                return
            self.holders -= 1
            if self.holders == 0 and self.was_enabled:
                gc.enable()

    def after_fork_in_child(self) -> None:
        # The scrapes holding it live in the parent; the child's collector is what
        # it was before the pause.
        self.lock = threading.Lock()
        if self.holders and self.was_enabled:
            gc.enable()
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
