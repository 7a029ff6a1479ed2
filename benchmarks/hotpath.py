"""
Hot path: ns per counter.add()/histogram.record() for ron-metrics and its peers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from common import Figure, interleave
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

from ron_metrics import Runtime, start
from ron_metrics.testing import config_for_tests

ATTRIBUTE_KEYS = ["http.request.method", "http.route", "http.response.status_code"]
ATTRIBUTE_SETS: list[dict[str, Any]] = [
    {"http.request.method": m, "http.route": r, "http.response.status_code": s}
    for m in ("GET", "POST")
    for r in ("/", "/items", "/items/{id}", "/users/{id}", "/health")
    for s in (200, 404)
]
PROM_LABELS = [tuple(str(v) for v in attrs.values()) for attrs in ATTRIBUTE_SETS]
N_SETS = len(ATTRIBUTE_SETS)


def ron_runtime(kind: str, otlp_endpoint: str | None, **cardinality: Any) -> Runtime:
    exporter: dict[str, Any] = {"kind": kind}
    if kind in {"otlp", "both"}:
        exporter["otlp"] = {
            "endpoint": otlp_endpoint or "http://127.0.0.1:9",
            "interval": "1s",
            "timeout": "500ms",
        }
    cardinality.setdefault("default_attributes", ATTRIBUTE_KEYS)
    if cardinality["default_attributes"] is None:
        del cardinality["default_attributes"]
    return start(
        config_for_tests(cardinality=cardinality, exporter=exporter), set_global=False
    )


def _counter_loop(add: Callable[..., None]) -> Callable[[int], None]:
    sets = ATTRIBUTE_SETS

    def run(ops: int) -> None:
        for i in range(ops):
            add(1, sets[i % N_SETS])

    return run


def _histogram_loop(record: Callable[..., None]) -> Callable[[int], None]:
    sets = ATTRIBUTE_SETS

    def run(ops: int) -> None:
        for i in range(ops):
            record(0.123, sets[i % N_SETS])

    return run


def _floor() -> Callable[[int], None]:
    lock = threading.Lock()
    table: dict[frozenset[tuple[str, Any]], float] = {}
    sets = ATTRIBUTE_SETS

    def run(ops: int) -> None:
        for i in range(ops):
            key = frozenset(sets[i % N_SETS].items())
            with lock:
                table[key] = table.get(key, 0.0) + 1

    return run


def _prom_counter() -> tuple[Callable[[int], None], Callable[[int], None]]:
    counter = PromCounter(
        "bench", "b", ["method", "route", "status"], registry=CollectorRegistry()
    )
    labels = PROM_LABELS
    child = counter.labels(*labels[0])

    def by_labels(ops: int) -> None:
        for i in range(ops):
            counter.labels(*labels[i % N_SETS]).inc()

    def bound(ops: int) -> None:
        for _ in range(ops):
            child.inc()

    return by_labels, bound


def _prom_histogram() -> tuple[Callable[[int], None], Callable[[int], None]]:
    hist = PromHistogram(
        "bench_h", "b", ["method", "route", "status"], registry=CollectorRegistry()
    )
    labels = PROM_LABELS
    child = hist.labels(*labels[0])

    def by_labels(ops: int) -> None:
        for i in range(ops):
            hist.labels(*labels[i % N_SETS]).observe(0.123)

    def bound(ops: int) -> None:
        for _ in range(ops):
            child.observe(0.123)

    return by_labels, bound


def _raw_sdk(readers: int, *, allowlist: bool = False) -> tuple[MeterProvider, Any]:
    views = (
        [View(instrument_name="*", attribute_keys=set(ATTRIBUTE_KEYS))]
        if allowlist
        else []
    )
    provider = MeterProvider(
        metric_readers=[InMemoryMetricReader() for _ in range(readers)],
        views=views,
        shutdown_on_exit=False,
    )
    return provider, provider.get_meter("bench")


def measure(
    ops: int, repeats: int, otlp_endpoint: str | None
) -> dict[str, dict[str, Figure]]:
    """All hot-path candidates, counters and histograms, interleaved."""
    runtimes = {
        kind: ron_runtime(kind, otlp_endpoint)
        for kind in ("prometheus", "otlp", "both")
    }
    raw1, meter1 = _raw_sdk(1)
    raw2, meter2 = _raw_sdk(2)
    raw1v, meter1v = _raw_sdk(1, allowlist=True)
    no_allowlist = ron_runtime("prometheus", otlp_endpoint, default_attributes=None)
    try:
        counters: dict[str, Callable[[int], None]] = {
            "dict under lock (floor)": _floor()
        }
        prom_labels, prom_bound = _prom_counter()
        counters["prometheus_client labels().inc()"] = prom_labels
        counters["prometheus_client bound child inc()"] = prom_bound
        counters["raw SDK, 1 reader"] = _counter_loop(meter1.create_counter("c").add)
        counters["raw SDK, 1 reader + same allowlist View"] = _counter_loop(
            meter1v.create_counter("c").add
        )
        counters["raw SDK, 2 readers"] = _counter_loop(meter2.create_counter("c").add)
        for kind, runtime in runtimes.items():
            counters[f"ron-metrics ({kind})"] = _counter_loop(
                runtime.get_meter("bench").create_counter("c").add
            )
        counters["ron-metrics (prometheus, no allowlist)"] = _counter_loop(
            no_allowlist.get_meter("bench").create_counter("c").add
        )
        histograms: dict[str, Callable[[int], None]] = {}
        h_labels, h_bound = _prom_histogram()
        histograms["prometheus_client labels().observe()"] = h_labels
        histograms["prometheus_client bound child observe()"] = h_bound
        histograms["raw SDK, 1 reader"] = _histogram_loop(
            meter1.create_histogram("h").record
        )
        histograms["raw SDK, 1 reader + same allowlist View"] = _histogram_loop(
            meter1v.create_histogram("h").record
        )
        histograms["raw SDK, 2 readers"] = _histogram_loop(
            meter2.create_histogram("h").record
        )
        for kind, runtime in runtimes.items():
            histograms[f"ron-metrics ({kind})"] = _histogram_loop(
                runtime.get_meter("bench").create_histogram("h").record
            )
        warmup = max(1000, ops // 10)
        return {
            "counter": interleave(counters, ops, repeats, warmup),
            "histogram": interleave(histograms, ops, repeats, warmup),
            "extras": _extras(ops, repeats, runtimes["prometheus"]),
        }
    finally:
        for runtime in (*runtimes.values(), no_allowlist):
            runtime.shutdown()
        for provider in (raw1, raw2, raw1v):
            provider.shutdown()


def _extras(ops: int, repeats: int, runtime: Runtime) -> dict[str, Figure]:
    """The cost of a dropped high-cardinality attribute, and of overflowing the limit."""
    counter = runtime.get_meter("extras").create_counter("c")
    sets = ATTRIBUTE_SETS
    with_user = [
        dict(attrs, **{"user.id": f"user-{i}"}) for i, attrs in enumerate(sets * 50)
    ]
    n_user = len(with_user)

    def plain(ops: int) -> None:
        for i in range(ops):
            counter.add(1, sets[i % N_SETS])

    def dropped_attribute(ops: int) -> None:
        for i in range(ops):
            counter.add(1, with_user[i % n_user])

    overflow_runtime = ron_runtime("prometheus", None, max_series=10)
    over = overflow_runtime.get_meter("extras").create_counter("c")
    many = [{"k": str(i)} for i in range(1000)]
    for attrs in many:
        over.add(1, attrs)  # 10 series + the overflow series from here on

    def overflowing(ops: int) -> None:
        for i in range(ops):
            over.add(1, many[i % 1000])

    try:
        return interleave(
            {
                "ron-metrics add, allowlisted attributes only": plain,
                "ron-metrics add, + dropped high-cardinality user.id": dropped_attribute,
                "ron-metrics add, past the cardinality limit (overflow)": overflowing,
            },
            ops,
            repeats,
            max(1000, ops // 10),
        )
    finally:
        overflow_runtime.shutdown()
