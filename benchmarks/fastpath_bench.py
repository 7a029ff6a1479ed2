"""
The fast path: ns per operation against the raw SDK and prometheus_client, in one run.

Same work on every side: one attribute set / one label value per call (``{"route":
"/items"}`` vs ``labels("/items")``); prometheus_client's histogram and ours use the
same 11 bucket boundaries. "auto" is the instrument as the app uses it; "bound" is
``ron_metrics.bind(...)``; prometheus_client's "child" is ``labels(...)`` resolved
once. 8 threads share one instrument (wall time / total operations). Collection
and memory use 10k series of one counter.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from common import NO_RUNTIME, Figure, interleave
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

import ron_metrics
from ron_metrics.testing import config_for_tests

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
ATTRS = {"route": "/items"}
THREADS = 8


def _ron(max_series: int = 2000) -> ron_metrics.Runtime:
    config = config_for_tests(
        **NO_RUNTIME,
        cardinality={
            "max_series": max_series,
            "instruments": {"latency": {"buckets": BOUNDS}},
        },
    )
    return ron_metrics.start(config, set_global=False)


def _sdk() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    view = View(
        instrument_name="latency",
        aggregation=ExplicitBucketHistogramAggregation(BOUNDS),
    )
    return MeterProvider(metric_readers=[reader], views=[view]), reader


def _loop(call: Callable[[], None]) -> Callable[[int], None]:
    def run(ops: int) -> None:
        for _ in range(ops):
            call()

    return run


def _candidates(
    runtime: ron_metrics.Runtime, provider: MeterProvider
) -> dict[str, Any]:
    ours = runtime.get_meter("bench")
    counter, histogram = ours.create_counter("jobs"), ours.create_histogram("latency")
    raw = provider.get_meter("bench")
    raw_counter, raw_histogram = (
        raw.create_counter("jobs"),
        raw.create_histogram("latency"),
    )
    registry = CollectorRegistry()
    prom_counter = PromCounter("jobs", "Jobs.", ["route"], registry=registry)
    prom_histogram = PromHistogram(
        "latency", "Latency.", ["route"], buckets=BOUNDS, registry=registry
    )
    bound_counter = ron_metrics.bind(counter, ATTRS)
    bound_histogram = ron_metrics.bind(histogram, ATTRS)
    child_counter = prom_counter.labels("/items")
    child_histogram = prom_histogram.labels("/items")
    return {
        "counter": {
            "ron-metrics add(1, attrs)": lambda: counter.add(1, ATTRS),
            "ron-metrics bound add(1)": lambda: bound_counter.add(1),
            "raw SDK add(1, attrs)": lambda: raw_counter.add(1, ATTRS),
            "prometheus_client labels().inc()": lambda: prom_counter.labels(
                "/items"
            ).inc(),
            "prometheus_client child inc()": child_counter.inc,
        },
        "histogram": {
            "ron-metrics record(v, attrs)": lambda: histogram.record(0.3, ATTRS),
            "ron-metrics bound record(v)": lambda: bound_histogram.record(0.3),
            "raw SDK record(v, attrs)": lambda: raw_histogram.record(0.3, ATTRS),
            "prometheus_client labels().observe()": lambda: prom_histogram.labels(
                "/items"
            ).observe(0.3),
            "prometheus_client child observe()": lambda: child_histogram.observe(0.3),
        },
    }


def _threaded(call: Callable[[], None], ops: int) -> float:
    per_thread = ops // THREADS

    def work() -> None:
        for _ in range(per_thread):
            call()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    started = time.perf_counter_ns()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.perf_counter_ns() - started) / (per_thread * THREADS)


def _collection(series: int, repeats: int) -> dict[str, Figure]:
    runtime = _ron(max_series=series + 10)
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="*", aggregation_cardinality_limit=series + 10)],
    )
    ours = runtime.get_meter("bench").create_counter("wide")
    raw = provider.get_meter("bench").create_counter("wide")
    for i in range(series):
        ours.add(1, {"key": f"k{i}"})
        raw.add(1, {"key": f"k{i}"})
    hub = runtime._hub
    figures = {
        "ron-metrics fast path (hub capture)": Figure("fast", "ms"),
        "raw SDK collect": Figure("sdk", "ms"),
    }
    for _ in range(repeats):
        for name, collect in (
            ("ron-metrics fast path (hub capture)", hub.capture),
            ("raw SDK collect", reader.get_metrics_data),
        ):
            started = time.perf_counter()
            collect()
            figures[name].values.append((time.perf_counter() - started) * 1000)
    runtime.shutdown()
    provider.shutdown()
    return figures


def _memory(series: int) -> dict[str, float]:
    """MiB allocated by creating ``series`` series (the provider built beforehand)."""
    runtime = _ron(max_series=series + 10)
    provider = MeterProvider(
        metric_readers=[InMemoryMetricReader()],
        views=[View(instrument_name="*", aggregation_cardinality_limit=series + 10)],
    )
    out: dict[str, float] = {}
    for name, meter in (
        ("ron-metrics fast path", runtime.get_meter("bench")),
        ("raw SDK", provider.get_meter("bench")),
    ):
        counter = meter.create_counter("wide")
        counter.add(1, {"key": "warm"})
        keys = [f"k{i}" for i in range(series)]
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for key in keys:
            counter.add(1, {"key": key})
        gc.collect()
        out[name] = (tracemalloc.get_traced_memory()[0] - base) / 2**20
        tracemalloc.stop()
    runtime.shutdown()
    provider.shutdown()
    return out


def measure(ops: int, repeats: int, series: int) -> dict[str, Any]:
    """
    ns/op single-threaded and with 8 threads; collection ms and MiB for ``series``.
    """
    runtime = _ron()
    provider, _ = _sdk()
    try:
        candidates = _candidates(runtime, provider)
        single = {
            kind: interleave(
                {n: _loop(c) for n, c in calls.items()}, ops, repeats, 1000
            )
            for kind, calls in candidates.items()
        }
        threaded: dict[str, dict[str, Figure]] = {}
        for kind, calls in candidates.items():
            threaded[kind] = {name: Figure(name, "ns/op") for name in calls}
            for _ in range(repeats):
                for name, call in calls.items():
                    threaded[kind][name].values.append(_threaded(call, ops))
    finally:
        runtime.shutdown()
        provider.shutdown()
    return {
        "single": single,
        "threads": threaded,
        "collection": _collection(series, repeats),
        "memory": _memory(series),
        "series": series,
    }


if __name__ == "__main__":
    found = measure(50_000, 3, 10_000)
    for mode in ("single", "threads"):
        for kind, figures in found[mode].items():
            for name, figure in figures.items():
                print(f"{mode:7} {kind:9} {name:42} {figure.text(0)} ns/op")
    for name, figure in found["collection"].items():
        print(f"collect {name:52} {figure.text(2)} ms")
    for name, mib in found["memory"].items():
        print(f"memory  {name:52} {mib:.1f} MiB")
