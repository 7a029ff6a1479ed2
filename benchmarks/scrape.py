"""
Scrape: time to collect and encode N series, peak memory during it, payload bytes;
and memory per 10k series held by each library.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from common import NO_RUNTIME, Figure
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import (
    CollectorRegistry,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client import Counter as PromCounter

from ron_metrics import Runtime, start
from ron_metrics.exporters.prometheus.encode import DirectEncoder
from ron_metrics.exporters.prometheus.render import Format, render
from ron_metrics.testing import config_for_tests


def _labels(n: int) -> list[tuple[str, str]]:
    return [(f"/route/{i % 100}", f"key-{i:07d}") for i in range(n)]


def _ron(n: int) -> tuple[Runtime, dict[str, Callable[[], bytes]]]:
    runtime = start(
        config_for_tests(
            **NO_RUNTIME, cardinality={"max_series": n + 10}, exporter={"kind": "none"}
        ),
        set_global=False,
    )
    counter = runtime.get_meter("bench").create_counter("requests")
    for route, key in _labels(n):
        counter.add(1, {"route": route, "key": key})
    hub = runtime._hub
    direct = DirectEncoder()

    def reference() -> bytes:
        return render(hub.scrape(), Format.TEXT, gzip_ok=False, max_bytes=1 << 31).body

    def direct_text() -> bytes:
        data = hub.capture()
        assert data is not None
        return direct.encode(data, Format.TEXT)

    def direct_openmetrics() -> bytes:
        data = hub.capture()
        assert data is not None
        return direct.encode(data, Format.OPENMETRICS)

    return runtime, {
        "ron-metrics direct encoder (text)": direct_text,
        "ron-metrics direct encoder (OpenMetrics)": direct_openmetrics,
        "ron-metrics reference path (exporter-prometheus)": reference,
    }


def _prometheus_client(n: int, *, created: bool = False) -> Callable[[], bytes]:
    registry = CollectorRegistry()
    counter = PromCounter("requests", "Requests.", ["route", "key"], registry=registry)
    for route, key in _labels(n):
        counter.labels(route, key).inc()

    def scrape() -> bytes:
        # A fair comparison: by default prometheus_client writes an extra
        # `_created` line per series, which ron-metrics does not emit.
        (enable_created_metrics if created else disable_created_metrics)()
        try:
            return generate_latest(registry)
        finally:
            enable_created_metrics()

    return scrape


def _naive_otel(n: int) -> tuple[MeterProvider, Callable[[], bytes]]:
    from opentelemetry.sdk.metrics import Counter as SdkCounter

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(
        registry=registry, cardinality_limits={SdkCounter: n + 10}
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("bench").create_counter("requests")
    for route, key in _labels(n):
        counter.add(1, {"route": route, "key": key})
    return provider, lambda: generate_latest(registry)


def measure(sizes: list[int], repeats: int) -> dict[int, dict[str, dict[str, Any]]]:
    """Per size: median [min,max] ms per scrape, peak MiB during one scrape, bytes."""
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for n in sizes:
        runtime, ron_paths = _ron(n)
        provider, naive = _naive_otel(n)
        candidates = {
            **ron_paths,
            "prometheus_client generate_latest (no _created)": _prometheus_client(n),
            "prometheus_client generate_latest (with _created)": _prometheus_client(
                n, created=True
            ),
            "naive OTel (PrometheusMetricReader + generate_latest)": naive,
        }
        try:
            figures = {name: Figure(name, "ms") for name in candidates}
            sizes_bytes: dict[str, int] = {}
            for fn in candidates.values():
                fn()  # warm up
            for _ in range(repeats):
                for name, fn in candidates.items():
                    started = time.perf_counter()
                    body = fn()
                    figures[name].values.append((time.perf_counter() - started) * 1000)
                    sizes_bytes[name] = len(body)
            peaks = {name: _peak_mib(fn) for name, fn in candidates.items()}
            results[n] = {
                name: {
                    "ms": figures[name],
                    "peak_mib": peaks[name],
                    "bytes": sizes_bytes[name],
                }
                for name in candidates
            }
        finally:
            runtime.shutdown()
            provider.shutdown()
    return results


def _peak_mib(fn: Callable[[], bytes]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / (1 << 20)


def _build(name: str, n: int) -> Any:
    if name == "ron-metrics":
        return _ron(n)
    if name == "prometheus_client":
        return _prometheus_client(n)
    from opentelemetry.sdk.metrics import Counter as SdkCounter

    # The SDK's default limit (2000 per stream) would cap the series: lift it, as ron does.
    reader = InMemoryMetricReader(cardinality_limits={SdkCounter: n + 10})
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("bench").create_counter("requests")
    for route, key in _labels(n):
        counter.add(1, {"route": route, "key": key})
    return provider


def _scraper(name: str, built: Any) -> Callable[[], bytes]:
    """
    One scrape of what ``_build`` made: ron-metrics' collection and direct encoding
    (what its exposer runs per scrape, with the encoder's caches kept), or
    prometheus_client's ``generate_latest``.
    """
    if name == "ron-metrics":
        scrape: Callable[[], bytes] = built[1]["ron-metrics direct encoder (text)"]
        return scrape
    if name == "prometheus_client":
        return cast("Callable[[], bytes]", built)
    raise ValueError(f"no scrape for {name}")


def _retained_mib(name: str, n: int, *, scraped: bool = False) -> float:
    """
    In this process: MiB retained by building ``n`` series (after a warm-up build),
    and with ``scraped`` after one scrape of them too.
    """
    warm = _build(name, 10)  # first-use costs (imports, caches) are not per-series
    if scraped:
        _scraper(name, warm)()
    labels = _labels(n)  # the label strings are the same input for everyone
    gc.collect()
    tracemalloc.start()
    keep = _build(name, n)
    if scraped:
        _scraper(name, keep)()
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del labels, keep, warm
    return current / (1 << 20)


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def _rss_over_scrapes(n: int, scrapes: int) -> list[float]:
    """In this process: RSS (MiB) after each of ``scrapes`` scrapes of ``n`` series."""
    runtime, paths = _ron(n)
    try:
        scrape = _scraper("ron-metrics", (runtime, paths))
        out = []
        for _ in range(scrapes):
            scrape()
            out.append(_rss_mib())
        return out
    finally:
        runtime.shutdown()


def _in_fresh_process(call: str) -> str:
    import subprocess
    import sys

    code = (
        "import logging, sys; logging.disable(logging.CRITICAL); "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import scrape; "
        f"print({call})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def memory_per_series(n: int) -> dict[str, float]:
    """MiB retained per ``n`` series in each library, each measured in a fresh process."""
    out: dict[str, float] = {}
    for name in ("ron-metrics", "prometheus_client", "raw OTel SDK"):
        out[name] = float(_in_fresh_process(f"scrape._retained_mib({name!r}, {n})"))
    for name in ("ron-metrics", "prometheus_client"):
        out[f"{name}, after one scrape"] = float(
            _in_fresh_process(f"scrape._retained_mib({name!r}, {n}, scraped=True)")
        )
    return out


def rss_over_scrapes(n: int, scrapes: int) -> list[float]:
    """RSS (MiB) of a fresh process after each of ``scrapes`` HTTP scrapes of ``n`` series."""
    found = _in_fresh_process(f"scrape._rss_over_scrapes({n}, {scrapes})")
    return [float(v) for v in found.strip("[]").split(",")]
