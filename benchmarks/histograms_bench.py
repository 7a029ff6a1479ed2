"""
Exponential histograms: what a recording costs, and what a scrape of them costs.

``record`` (ns per call, interleaved in one run), in the worst realistic shape: three
attributes in a new dict literal per call with an int ``http.response.status_code``,
the value a latency that varies from call to call (a fixed cycle of 4,096
log-normal values, the same for every candidate):

- ron-metrics, explicit buckets and exponential (both on the fast path);
- the raw OpenTelemetry SDK with the same allowlist View, exponential and explicit.

Scrape of 1,000 histogram series (the same recordings into an explicit and an
exponential histogram): the bytes of the text exposition of the classic histogram
and of the protobuf exposition of the native one (plain and gzip), and the time
to collect and encode each (the HTTP layer around it is the same for both).
"""

from __future__ import annotations

import gzip
import random
import time
from collections.abc import Callable
from typing import Any

from common import NO_RUNTIME, Figure, interleave
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

import ron_metrics
from ron_metrics.exporters.prometheus.encode import DirectEncoder
from ron_metrics.exporters.prometheus.protobuf import ProtoEncoder
from ron_metrics.exporters.prometheus.render import Format
from ron_metrics.testing import config_for_tests

KEYS = ["http.request.method", "http.route", "http.response.status_code"]
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0]
_CYCLE = 4096
_ROUTES = [f"/r{i}" for i in range(10)]


def _latencies() -> list[float]:
    generator = random.Random(11)
    return [generator.lognormvariate(-3.0, 1.2) for _ in range(_CYCLE)]


def _loop(record: Callable[..., None]) -> Callable[[int], None]:
    values = _latencies()
    routes = _ROUTES

    def run(ops: int) -> None:
        for i in range(ops):
            # A new dict per call, an int status code: what middleware writes.
            record(
                values[i % _CYCLE],
                {
                    "http.request.method": "GET",
                    "http.route": routes[i % 10],
                    "http.response.status_code": 200,
                },
            )

    return run


def _runtime(aggregation: str) -> ron_metrics.Runtime:
    config = config_for_tests(
        cardinality={
            "default_attributes": KEYS,
            "histogram_aggregation": aggregation,
        },
        **NO_RUNTIME,
    )
    return ron_metrics.start(config, set_global=False)


def _raw_sdk(aggregation: Any) -> MeterProvider:
    return MeterProvider(
        metric_readers=[InMemoryMetricReader()],
        views=[
            View(
                instrument_name="*",
                attribute_keys=set(KEYS),
                aggregation=aggregation,
            )
        ],
        shutdown_on_exit=False,
    )


def measure_record(ops: int, repeats: int) -> dict[str, Figure]:
    explicit, exponential = _runtime("explicit"), _runtime("exponential")
    raw_exponential = _raw_sdk(ExponentialBucketHistogramAggregation())
    raw_explicit = _raw_sdk(ExplicitBucketHistogramAggregation(BOUNDS))
    try:
        candidates = {
            "ron-metrics explicit": _loop(
                explicit.get_meter("b").create_histogram("h", unit="s").record
            ),
            "ron-metrics exponential": _loop(
                exponential.get_meter("b").create_histogram("h", unit="s").record
            ),
            "raw SDK exponential": _loop(
                raw_exponential.get_meter("b").create_histogram("h").record
            ),
            "raw SDK explicit": _loop(
                raw_explicit.get_meter("b").create_histogram("h").record
            ),
        }
        return interleave(candidates, ops, repeats, max(1000, ops // 10))
    finally:
        explicit.shutdown()
        exponential.shutdown()
        raw_exponential.shutdown()
        raw_explicit.shutdown()


def _filled(aggregation: str, series: int) -> ron_metrics.Runtime:
    runtime = _runtime(aggregation)
    histogram = runtime.get_meter("b").create_histogram("latency", unit="s")
    values = _latencies()
    for index in range(series):
        attributes: dict[str, str | int] = {
            "http.request.method": "GET",
            "http.route": f"/r{index}",
            "http.response.status_code": 200,
        }
        for value in values[index % 64 :: 64]:
            histogram.record(value, attributes)
    return runtime


def measure_scrape(series: int, repeats: int) -> dict[str, Any]:
    """Bytes and collect+encode time: text of classic vs protobuf of native."""
    classic, native = _filled("explicit", series), _filled("exponential", series)
    text, proto = DirectEncoder(), ProtoEncoder()
    cases: dict[str, Callable[[], bytes]] = {
        "text 0.0.4, classic histograms": lambda: text.encode(
            classic._hub.capture() or _empty(), Format.TEXT
        ),
        "protobuf, native histograms": lambda: proto.encode(
            native._hub.capture() or _empty()
        ),
    }
    try:
        out: dict[str, Any] = {}
        for name, scrape in cases.items():
            body = scrape()
            timing = Figure(name, "ms")
            for _ in range(repeats):
                started = time.perf_counter()
                scrape()
                timing.values.append((time.perf_counter() - started) * 1000)
            out[name] = {
                "bytes": len(body),
                "gzip_bytes": len(gzip.compress(body, 6)),
                "time": timing,
            }
        return out
    finally:
        classic.shutdown()
        native.shutdown()


def _empty() -> Any:
    from opentelemetry.sdk.metrics.export import MetricsData

    return MetricsData(resource_metrics=[])
