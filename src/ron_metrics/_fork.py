"""
Fork safety for the provider we build.

The SDK's ``MeterProvider`` re-detects process resources in every forked child,
from an at-fork handler, through a thread pool. At-fork handlers run in the order
they were registered, so when ``concurrent.futures.thread`` is first imported
after the provider was built, the pool's own handler (which re-creates a lock the
parent held across ``fork()``) runs *after* the SDK's: the child blocks inside
``os.fork()`` on that still-held lock and never returns — under gunicorn
``--preload`` no worker boots.

Our provider replaces that handler: in the child it re-creates the SDK's locks,
stamps its own ``service.instance.id`` (when the instance was not set
explicitly), forgets the parent's measurements, and starts no thread. The hub's collection lock is held across
``fork()`` so no child inherits a half-done collection.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import Meter as SdkMeter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from ron_metrics.fast.meter import FastMeter, FastRegistry

__all__ = ["ForkSafeMeterProvider", "hold_across_fork"]


class ForkSafeMeterProvider(MeterProvider):
    """
    A ``MeterProvider`` whose forked children return from ``fork()`` at once.

    Args:
        child_resource: Called in a forked child; its attributes are merged into
            the provider's resource (e.g. the child's own instance id).
    """

    def __init__(
        self,
        *args: Any,
        child_resource: Callable[[], Resource] | None = None,
        **kwargs: Any,
    ) -> None:
        self._child_resource = child_resource
        self.fast: FastRegistry | None = None
        self._fast_meters: dict[int, Any] = {}
        super().__init__(*args, **kwargs)

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        # With the fast path on, synchronous instruments of every meter take it.
        meter = super().get_meter(*args, **kwargs)
        if self.fast is None or not isinstance(meter, SdkMeter):
            return meter
        wrapped = self._fast_meters.get(id(meter))
        if wrapped is None or wrapped._sdk is not meter:
            wrapped = self._fast_meters[id(meter)] = FastMeter(meter, self.fast)
        return wrapped

    def _handle_fork(self) -> None:
        # Overrides the SDK's at-fork handler (weakly bound to this method): the
        # same lock re-creation, without the thread pool that can deadlock.
        self._lock = threading.Lock()
        self._meter_lock = threading.Lock()
        MeterProvider._all_metric_readers_lock = threading.Lock()
        if self._child_resource is not None:
            self._update_resource(self._child_resource())
        self._forget_measurements()

    def _forget_measurements(self) -> None:
        # A child starts counting from zero: what the parent counted before the
        # fork is the parent's, and would be exported twice (once per process)
        # otherwise. The SDK keeps one aggregation per series in each view match.
        consumer = self._measurement_consumer
        for storage in consumer._reader_storages.values():
            for matches in storage._instrument_view_instrument_matches.values():
                for match in matches:
                    match._attributes_aggregation = {}


def hold_across_fork(owner: object, attribute: str = "_lock") -> None:
    """
    Hold ``owner.<attribute>`` (a lock) while the process forks.

    A child never inherits it taken by a thread that does not exist there; the
    parent gets it back after the fork. ``owner`` is held weakly.
    """
    ref = weakref.ref(owner)

    def lock() -> threading.Lock | None:
        alive = ref()
        held: threading.Lock | None = getattr(alive, attribute, None)
        return held

    def before() -> None:
        if (held := lock()) is not None:
            held.acquire()

    def after() -> None:
        if (held := lock()) is not None and held.locked():
            held.release()

    os.register_at_fork(before=before, after_in_parent=after, after_in_child=after)
