"""
Latency of real HTTP requests against ron-metrics' exposer: /healthz while a big
scrape renders, and /metrics (1k series) at a steady 5 requests per second.
"""

from __future__ import annotations

import threading
import time

import httpx
from common import percentile

from ron_metrics import start
from ron_metrics.testing import config_for_tests


def _runtime(series: int):  # type: ignore[no-untyped-def]  # returns a runtime or a peer
    runtime = start(
        config_for_tests(
            cardinality={"max_series": series + 10}, exporter={"kind": "prometheus"}
        ),
        set_global=False,
    )
    counter = runtime.get_meter("bench").create_counter("wide")
    for i in range(series):
        counter.add(1, {"key": f"key-{i:07d}"})
    return runtime


def healthz_during_scrape(series: int, probes: int) -> dict[str, float]:
    """/healthz latency (ms) sampled only while a ``series``-wide scrape is in flight."""
    runtime = _runtime(series)
    try:
        scraping = threading.Event()
        stop = threading.Event()
        scrape_ms: list[float] = []

        def scrape_loop() -> None:
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    scraping.set()
                    started = time.perf_counter()
                    client.get(f"{runtime.address}/metrics")
                    scrape_ms.append((time.perf_counter() - started) * 1000)
                    scraping.clear()

        thread = threading.Thread(target=scrape_loop)
        thread.start()
        samples: list[float] = []
        with httpx.Client(timeout=30) as client:
            while len(samples) < probes:
                scraping.wait(30)
                started = time.perf_counter()
                client.get(f"{runtime.address}/healthz")
                elapsed = (time.perf_counter() - started) * 1000
                if scraping.is_set():
                    samples.append(elapsed)
        stop.set()
        thread.join(120)
        return {
            "p50_ms": percentile(samples, 0.5),
            "p99_ms": percentile(samples, 0.99),
            "max_ms": max(samples),
            "scrape_ms": percentile(scrape_ms, 0.5),
            "n": float(len(samples)),
        }
    finally:
        runtime.shutdown()


def steady_scrapes(series: int, rate: float, seconds: float) -> dict[str, float]:
    """/metrics latency (ms) at a steady request rate."""
    runtime = _runtime(series)
    try:
        latencies: list[float] = []
        with httpx.Client(timeout=30) as client:
            client.get(f"{runtime.address}/metrics")
            period = 1.0 / rate
            next_at = time.perf_counter()
            deadline = next_at + seconds
            while next_at < deadline:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                started = time.perf_counter()
                client.get(f"{runtime.address}/metrics")
                latencies.append((time.perf_counter() - started) * 1000)
                next_at += period
        return {
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99),
            "n": float(len(latencies)),
        }
    finally:
        runtime.shutdown()
