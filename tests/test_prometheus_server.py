from __future__ import annotations

import json
import math
import random
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import StartFn, prometheus_config, require, stop_process
from ron_metrics.testing import reserved_port


@pytest.fixture(name="prometheus_for")
def _prometheus_for(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "prometheus.log").open("wb")

    def launch(
        target: str, ca_file: str | None = None, features: tuple[str, ...] = ()
    ) -> str:
        port = reserved_port()
        config = tmp_path / "prometheus.yml"
        tls = (
            f"    scheme: https\n    tls_config:\n      ca_file: {ca_file}\n"
            if ca_file
            else ""
        )
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: ron\n" + tls + "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        process = subprocess.Popen(
            [
                require("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *(f"--enable-feature={feature}" for feature in features),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        processes.append(process)
        return f"http://127.0.0.1:{port}"

    yield launch
    for process in processes:
        stop_process(process)
    log.close()


def query(base: str, promql: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5
    )
    result: list[dict[str, object]] = json.loads(response.text)["data"]["result"]
    return result


def wait_for_value(
    base: str, promql: str, expected: float, timeout: float = 45
) -> float | None:
    deadline = time.monotonic() + timeout
    seen: float | None = None
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)
        except (httpx.HTTPError, KeyError, json.JSONDecodeError):
            result = []
        if result:
            seen = float(result[0]["value"][1])  # type: ignore[index]  # JSON from the query API
            if seen == expected:
                return seen
        time.sleep(0.5)
    return seen


@pytest.mark.peer
class TestRealPrometheus:
    def test_prometheus_scrapes_exact_counter_value(
        self, start_runtime: StartFn, prometheus_for: object
    ) -> None:
        """A real Prometheus scraping every 1 s sees up == 1 and the exact counter value."""
        runtime = start_runtime(exporter=prometheus_config())
        counter = runtime.get_meter("app").create_counter(
            "checkout", description="Checkouts."
        )
        for _ in range(42):
            counter.add(1, {"shop": "eu"})
        target = str(runtime.address).removeprefix("http://")
        base = prometheus_for(target)  # type: ignore[operator]  # fixture factory
        assert wait_for_value(base, 'up{job="ron"}', 1.0) == 1.0
        assert wait_for_value(base, 'checkout_total{shop="eu"}', 42.0) == 42.0
        counter.add(8, {"shop": "eu"})
        assert wait_for_value(base, 'checkout_total{shop="eu"}', 50.0) == 50.0

    def test_prometheus_scrapes_over_tls(
        self, start_runtime: StartFn, prometheus_for: object, tmp_path: Path
    ) -> None:
        """A real Prometheus scrapes the exposer over TLS with our CA."""
        from tls_material import make_pki

        pki = make_pki(tmp_path / "pki")
        runtime = start_runtime(
            exporter=prometheus_config(
                tls={"cert": pki.path("server.pem"), "key": pki.path("server.key")}
            )
        )
        runtime.get_meter("app").create_counter("secure_hits").add(5)
        target = str(runtime.address).removeprefix("https://")
        base = prometheus_for(target, ca_file=pki.path("ca.pem"))  # type: ignore[operator]  # fixture factory
        assert wait_for_value(base, 'up{job="ron"}', 1.0) == 1.0
        assert wait_for_value(base, "secure_hits_total", 5.0) == 5.0


def _batch(size: int = 201) -> list[float]:
    # One fixed batch of latencies from 1 ms to about 20 s (log-normal, seeded).
    # 201 values: no quantile asked for falls on a whole rank, where the true
    # quantile is either of two neighbours (200 * 0.99 = 198 exactly).
    generator = random.Random(7)  # noqa: S311 - test data, not secrets
    return [min(20.0, generator.lognormvariate(-3.0, 1.5)) for _ in range(size)]


def _true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.peer
def test_prometheus_ingests_native_histograms(
    start_runtime: StartFn, prometheus_for: object
) -> None:
    """Prometheus 2.42 with native histograms scrapes the protobuf exposition:
    the exponential histogram arrives as a native histogram, quantiles of its rate
    lie within the schema's relative error, count and sum are exact, and a classic
    family of the same scrape is exact too."""
    runtime = start_runtime(
        exporter=prometheus_config(),
        cardinality={"instruments": {"lat": {"aggregation": "exponential"}}},
    )
    meter = runtime.get_meter("app")
    latency = meter.create_histogram("lat", unit="s", description="Latency.")
    orders = meter.create_counter("orders")
    batch = _batch()
    # The series exists before the batches (with one value inside their range,
    # so the scale is theirs): the rate over a window from that first sample is
    # exactly the batches, k copies of one, whatever the scrapes cut in between.
    latency.record(min(batch), {"route": "/a"})
    recorded: list[float] = [min(batch)]
    target = str(runtime.address).removeprefix("http://")
    base = prometheus_for(target, features=("native-histograms",))  # type: ignore[operator]  # fixture factory
    assert wait_for_value(base, 'up{job="ron"}', 1.0) == 1.0
    assert wait_for_value(base, "histogram_count(lat_seconds)", 1.0) == 1.0
    for _ in range(8):
        for value in batch:
            latency.record(value, {"route": "/a"})
        recorded.extend(batch)
        orders.add(1)
        time.sleep(0.6)
    assert wait_for_value(base, "histogram_count(lat_seconds)", len(recorded)) == len(
        recorded
    )
    assert wait_for_value(base, "orders_total", 8.0) == 8.0
    exposed = _exposed(runtime)
    assert exposed.sample_sum == pytest.approx(sum(recorded), rel=1e-12)
    summed = wait_for_value(base, "histogram_sum(lat_seconds)", exposed.sample_sum)
    assert summed == exposed.sample_sum
    (series,) = query(base, "lat_seconds")
    assert "histogram" in series, series  # a native histogram, not classic samples
    schema_base = float(2 ** (2.0**-exposed.schema))
    for q in (0.5, 0.9, 0.99):
        (result,) = query(base, f"histogram_quantile({q}, rate(lat_seconds[1m]))")
        estimate = float(result["value"][1])  # type: ignore[index]  # JSON from the query API
        truth = _true_quantile(batch, q)
        assert truth / schema_base <= estimate <= truth * schema_base, (
            q,
            estimate,
            truth,
        )


def _exposed(runtime: object) -> Any:
    # The histogram as the exposer writes it (protobuf, decoded by the oracle).
    from prom_proto import PROTOBUF_ACCEPT, read_families

    body = httpx.get(
        f"{runtime.address}/metrics",  # type: ignore[attr-defined]  # a Runtime
        headers={"Accept": PROTOBUF_ACCEPT},
        timeout=10,
    ).content
    (family,) = [f for f in read_families(body) if f.name == "lat_seconds"]
    return family.metric[0].histogram
