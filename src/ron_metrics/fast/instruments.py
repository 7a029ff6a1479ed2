"""
The fast synchronous instruments, and bound handles for hot loops.

Each instrument checks the measurement as the SDK does (finite; non-negative for
counters and histograms — anything else is dropped with the SDK's warning), finds
the cell of every stream it feeds, and updates it under the cell's lock. No
``Measurement`` object, no context lookup, no per-call attribute hashing once an
attribute set has been seen. (Exemplars are not kept on this path.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.metrics import _Gauge as Gauge

from ron_metrics.fast.stream import Stream

__all__ = [
    "BoundCounter",
    "BoundHistogram",
    "FastCounter",
    "FastGauge",
    "FastHistogram",
    "FastUpDownCounter",
    "bind",
]

_log = logging.getLogger("opentelemetry.sdk.metrics._internal.instrument")
Attributes = Mapping[str, Any] | None


def _invalid(kind: str, name: str, amount: float, *, signed: bool) -> bool:
    # The SDK's checks and messages, so logs read the same on both paths.
    if not math.isfinite(amount):
        _log.warning(
            "Add amount %s is not finite on %s %s, ignoring measurement.",
            amount,
            kind,
            name,
        )
        return True
    if not signed and amount < 0:
        _log.warning("Add amount must be non-negative on %s %s.", kind, name)
        return True
    return False


class _Fast:
    """What every fast instrument holds: its identity and the streams it feeds."""

    def __init__(
        self, name: str, unit: str, description: str, streams: tuple[Stream, ...]
    ) -> None:
        # The API's Instrument.__init__ is abstract and stores nothing: set it here.
        self.name = name
        self.unit = unit
        self.description = description
        self._streams = streams


class _Adder(_Fast):
    """Shared by counters and up-down counters: add to every stream's cell."""

    _signed: bool
    _kind: str

    def add(
        self,
        amount: float,
        attributes: Attributes = None,
        context: Context | None = None,
    ) -> None:
        if _invalid(self._kind, self.name, amount, signed=self._signed):
            return
        for stream in self._streams:
            cell: Any = stream.cell(attributes)
            with cell.lock:
                cell.value += amount


class FastCounter(_Adder, Counter):
    """A monotonic counter on the fast path."""

    _signed = False
    _kind = "Counter"


class FastUpDownCounter(_Adder, UpDownCounter):
    """An up-down counter on the fast path."""

    _signed = True
    _kind = "UpDownCounter"


class FastHistogram(_Fast, Histogram):
    """A histogram on the fast path (bucket boundaries resolved per stream)."""

    def record(
        self,
        amount: float,
        attributes: Attributes = None,
        context: Context | None = None,
    ) -> None:
        if not math.isfinite(amount):
            _log.warning(
                "Record amount %s is not finite on Histogram %s, ignoring measurement.",
                amount,
                self.name,
            )
            return
        if amount < 0:
            _log.warning(
                "Record amount must be non-negative on Histogram %s.", self.name
            )
            return
        for stream in self._streams:
            cell: Any = stream.cell(attributes)
            cell.record(amount)


class FastGauge(_Fast, Gauge):
    """A synchronous gauge on the fast path: the last value set wins."""

    def set(
        self,
        amount: float,
        attributes: Attributes = None,
        context: Context | None = None,
    ) -> None:
        if not math.isfinite(amount):
            _log.warning(
                "Set amount %s is not finite on Gauge %s, ignoring measurement.",
                amount,
                self.name,
            )
            return
        for stream in self._streams:
            cell: Any = stream.cell(attributes)
            with cell.lock:
                cell.value = amount


class BoundCounter:
    """
    ``add`` with the attributes resolved once (see :func:`bind`).
    """

    __slots__ = ("_cells", "_kind", "_name", "_signed")

    def __init__(self, instrument: _Adder, attributes: Attributes) -> None:
        self._cells: tuple[Any, ...] = tuple(
            stream.cell(attributes) for stream in instrument._streams
        )
        self._signed = instrument._signed
        self._kind = instrument._kind
        self._name = instrument.name

    def add(self, amount: float) -> None:
        """Add ``amount`` (dropped with a warning where the instrument would drop it)."""
        if _invalid(self._kind, self._name, amount, signed=self._signed):
            return
        for cell in self._cells:
            with cell.lock:
                cell.value += amount


class BoundHistogram:
    """
    ``record`` with the attributes resolved once (see :func:`bind`).
    """

    __slots__ = ("_cells", "_instrument")

    def __init__(self, instrument: FastHistogram, attributes: Attributes) -> None:
        self._cells: tuple[Any, ...] = tuple(
            stream.cell(attributes) for stream in instrument._streams
        )
        self._instrument = instrument

    def record(self, amount: float) -> None:
        """Record ``amount`` (non-negative and finite, as for the instrument)."""
        if not math.isfinite(amount) or amount < 0:
            self._instrument.record(amount)  # the instrument's warning
            return
        for cell in self._cells:
            cell.record(amount)


class _Fallback:
    """A handle for an instrument that is not on the fast path: same calls, same effect."""

    __slots__ = ("_attributes", "_instrument")

    def __init__(self, instrument: Any, attributes: Attributes) -> None:
        self._instrument = instrument
        self._attributes = dict(attributes) if attributes else None

    def add(self, amount: float) -> None:
        self._instrument.add(amount, self._attributes)

    def record(self, amount: float) -> None:
        self._instrument.record(amount, self._attributes)


def bind(instrument: Any, attributes: Attributes = None) -> Any:
    """
    A handle that adds to (``.add(value)``) or records into (``.record(value)``) one
    series of ``instrument``, with ``attributes`` resolved once.

    For hot loops: the allowlist, the series key and the cardinality limit are
    applied here, once; each call then only updates the series under its lock.
    The series exists from the bind on (at zero). On an instrument that is not on
    the fast path (another provider's, or with the fast path off) the handle
    calls the instrument with the same attributes::

        requests = meter.create_counter("jobs.processed")
        processed = ron_metrics.bind(requests, {"queue": "default"})
        for job in jobs:
            ...
            processed.add(1)
    """
    if isinstance(instrument, FastHistogram):
        return BoundHistogram(instrument, attributes)
    if isinstance(instrument, _Adder):
        return BoundCounter(instrument, attributes)
    return _Fallback(instrument, attributes)
