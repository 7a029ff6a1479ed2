"""
A bounded in-process event bus.

Publishing never blocks: each subscriber has a bounded buffer, and when it is full
the oldest event is dropped and counted (``bus_lagged_total``) — a slow subscriber
lags, it never stalls the publisher.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Bus",
    "ConfigUpdated",
    "Draining",
    "Event",
    "ExporterSwitched",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class ConfigUpdated:
    """
    A reload was applied: old and new config digests, and the changed key paths.
    """

    old_digest: str
    new_digest: str
    changed_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExporterSwitched:
    """
    The active exporter kind changed.
    """

    old_kind: str
    new_kind: str


@dataclass(frozen=True, slots=True)
class Draining:
    """
    Shutdown began; readiness is now 503.
    """


Event = ConfigUpdated | ExporterSwitched | Draining


class Subscription:
    """
    One subscriber's bounded buffer.
    """

    def __init__(self, capacity: int, on_lag: Callable[[int], None]) -> None:
        self._events: deque[Event] = deque()
        self._capacity = capacity
        self._on_lag = on_lag
        self._lock = threading.Lock()
        self.lagged = 0

    def _offer(self, event: Event) -> None:
        with self._lock:
            if len(self._events) >= self._capacity:
                self._events.popleft()
                self.lagged += 1
                self._on_lag(1)
            self._events.append(event)

    def drain(self) -> list[Event]:
        """
        Take every buffered event, oldest first.
        """
        with self._lock:
            events = list(self._events)
            self._events.clear()
            return events


class Bus:
    """
    Broadcast events to every subscriber without blocking the publisher.
    """

    def __init__(self, on_lag: Callable[[int], None] | None = None) -> None:
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self._on_lag = on_lag or (lambda _count: None)

    def subscribe(self, capacity: int = 64) -> Subscription:
        """
        A new subscription holding at most ``capacity`` undelivered events.
        """
        subscription = Subscription(max(1, capacity), self._on_lag)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """
        Stop delivering to ``subscription``.
        """
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def publish(self, event: Event) -> None:
        """
        Deliver ``event`` to every subscriber; never blocks on a slow one.
        """
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription._offer(event)
