"""
Latency of real HTTP requests against ron-metrics' exposer: /healthz while a big
scrape renders, and /metrics (1k series) at a steady 5 requests per second.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

import httpx
from common import NO_RUNTIME, free_port, percentile

from ron_metrics import start
from ron_metrics.testing import config_for_tests


def _runtime(series: int):  # type: ignore[no-untyped-def]  # returns a runtime or a peer
    runtime = start(
        config_for_tests(
            **NO_RUNTIME,
            cardinality={"max_series": series + 10},
            exporter={"kind": "prometheus"},
        ),
        set_global=False,
    )
    counter = runtime.get_meter("bench").create_counter("wide")
    for i in range(series):
        counter.add(1, {"key": f"key-{i:07d}"})
    return runtime


def healthz_during_scrape(
    series: int, probes: int, *, freeze: bool = False
) -> dict[str, float]:
    """
    /healthz latency (ms) sampled only while a ``series``-wide scrape is in flight;
    with ``freeze``, ``gc.freeze()`` runs once after start-up (the documented recipe).
    """
    runtime = _runtime(series)
    if freeze:
        gc.collect()
        gc.freeze()
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
        if freeze:
            gc.unfreeze()


def healthz_idle(series: int, probes: int) -> dict[str, float]:
    """/healthz latency (ms) with the same series and no scrape in flight."""
    runtime = _runtime(series)
    try:
        samples: list[float] = []
        with httpx.Client(timeout=30) as client:
            client.get(f"{runtime.address}/healthz")
            for _ in range(probes):
                started = time.perf_counter()
                client.get(f"{runtime.address}/healthz")
                samples.append((time.perf_counter() - started) * 1000)
        return {
            "p50_ms": percentile(samples, 0.5),
            "p99_ms": percentile(samples, 0.99),
            "max_ms": max(samples),
            "n": float(len(samples)),
        }
    finally:
        runtime.shutdown()


def steady_scrapes(
    series: int, rate: float, seconds: float, *, peer: bool = False
) -> dict[str, float]:
    """
    /metrics latency (ms) at a steady request rate — ours, or (``peer``)
    prometheus_client's own HTTP server on the same series (no ``_created`` lines).
    """
    if peer:
        address, stop = _prometheus_client_server(series)
    else:
        runtime = _runtime(series)
        address, stop = str(runtime.address), runtime.shutdown
    try:
        latencies: list[float] = []
        with httpx.Client(timeout=30) as client:
            client.get(f"{address}/metrics")
            period = 1.0 / rate
            next_at = time.perf_counter()
            deadline = next_at + seconds
            while next_at < deadline:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                started = time.perf_counter()
                client.get(f"{address}/metrics")
                latencies.append((time.perf_counter() - started) * 1000)
                next_at += period
        return {
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99),
            "n": float(len(latencies)),
        }
    finally:
        stop()


def _prometheus_client_server(series: int) -> tuple[str, Callable[[], None]]:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        disable_created_metrics,
        enable_created_metrics,
        start_http_server,
    )

    disable_created_metrics()  # the same lines ron-metrics writes
    registry = CollectorRegistry()
    counter = Counter("wide", "Wide.", ["key"], registry=registry)
    for i in range(series):
        counter.labels(f"key-{i:07d}").inc()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)
        enable_created_metrics()  # a process-wide switch: put it back

    return f"http://127.0.0.1:{port}", stop
