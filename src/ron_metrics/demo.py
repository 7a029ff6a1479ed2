"""
The demo workload: a synthetic HTTP-server-like service, instrumented with the
plain OpenTelemetry API.

- ``http.server.requests`` (counter) and ``http.server.request.duration``
  (histogram, seconds) with ``http.request.method``, ``http.route`` and
  ``http.response.status_code``;
- a ``user.id`` attribute on every request that the demo's allowlist drops;
- every ``burst_every`` ticks, a burst of distinct ``cache.key`` values on
  ``cache.lookups`` that trips the cardinality limit (the overflow series).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from opentelemetry.metrics import Meter

__all__ = ["DEMO_CARDINALITY", "DemoWorkload"]

# The demo's cardinality policy: merged under the user's config when absent.
DEMO_CARDINALITY = {
    "max_series": 500,
    "instruments": {
        "http.server.*": {
            "attributes": [
                "http.request.method",
                "http.route",
                "http.response.status_code",
            ]
        },
        "cache.lookups": {"attributes": ["cache.key"], "max_series": 100},
    },
}

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ROUTES = ("/", "/api/items", "/api/items/{id}", "/api/users/{id}", "/healthz")
_METHODS = ("GET", "GET", "GET", "POST", "DELETE")
_STATUSES = (200, 200, 200, 200, 201, 404, 500)


@dataclass
class DemoWorkload:
    """
    Generates one tick of synthetic traffic per :meth:`tick` call.
    """

    meter: Meter
    seed: int = 7
    burst_every: int = 10
    burst_size: int = 250
    _ticks: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - synthetic data, not security
        self.requests = self.meter.create_counter(
            "http.server.requests", description="HTTP requests served."
        )
        self.duration = self.meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Time to serve one HTTP request.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.cache = self.meter.create_counter(
            "cache.lookups",
            description="Cache lookups by key (bursty, high cardinality).",
        )

    def tick(self, requests: int = 50) -> None:
        """
        Record ``requests`` synthetic requests, plus a cardinality burst every few ticks.
        """
        self._ticks += 1
        for _ in range(requests):
            attributes: dict[str, str | int] = {
                "http.request.method": self._rng.choice(_METHODS),
                "http.route": self._rng.choice(_ROUTES),
                "http.response.status_code": self._rng.choice(_STATUSES),
                "user.id": f"user-{self._rng.randrange(1_000_000)}",
            }
            self.requests.add(1, attributes)
            self.duration.record(self._rng.lognormvariate(-4.0, 1.0), attributes)
        if self._ticks % self.burst_every == 1:
            for index in range(self.burst_size):
                self.cache.add(1, {"cache.key": f"k{self._ticks}-{index}"})
