from __future__ import annotations

import threading

from ron_metrics.bus import Bus, ConfigUpdated, Draining, Event, ExporterSwitched


def _publish_many(bus: Bus, count: int) -> None:
    for _ in range(count):
        bus.publish(Draining())


class TestBus:
    def test_every_subscriber_gets_every_event(self) -> None:
        """Events are broadcast in order to every subscriber."""
        bus = Bus()
        first, second = bus.subscribe(), bus.subscribe()
        events: list[Event] = [Draining(), ExporterSwitched("prometheus", "otlp")]
        for event in events:
            bus.publish(event)
        assert first.drain() == events
        assert second.drain() == events
        assert first.drain() == []

    def test_slow_subscriber_lags_and_is_counted(self) -> None:
        """A full buffer drops its oldest event and counts it; the publisher never waits."""
        lagged: list[int] = []
        bus = Bus(on_lag=lagged.append)
        slow = bus.subscribe(capacity=3)
        for index in range(10):
            bus.publish(ConfigUpdated(str(index), str(index + 1), ()))
        kept = slow.drain()
        assert [event.old_digest for event in kept] == ["7", "8", "9"]  # type: ignore[union-attr]  # only ConfigUpdated was published
        assert slow.lagged == 7
        assert sum(lagged) == 7

    def test_publish_from_many_threads_is_bounded(self) -> None:
        """Concurrent publishers never exceed a subscriber's capacity."""
        bus = Bus()
        subscription = bus.subscribe(capacity=50)
        threads = [
            threading.Thread(target=lambda: _publish_many(bus, 500)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(subscription.drain()) == 50
        assert subscription.lagged == 4 * 500 - 50

    def test_unsubscribed_gets_nothing(self) -> None:
        """After unsubscribe, no more events are buffered."""
        bus = Bus()
        subscription = bus.subscribe()
        bus.unsubscribe(subscription)
        bus.unsubscribe(subscription)
        bus.publish(Draining())
        assert subscription.drain() == []
