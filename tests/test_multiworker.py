from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from collector import Rotel
from conftest import stop_process
from ron_metrics.testing import reserved_port

HERE = Path(__file__).parent
WORKERS = 2
REQUESTS = 40


@pytest.mark.peer
def test_each_worker_pushes_its_own_series(tmp_path: Path) -> None:
    """hypercorn -w 2: rotel sees one series per worker, and the totals add up."""
    rotel = Rotel(tmp_path)
    rotel.start()
    port = reserved_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RON_METRICS_", "OTEL_"))
    }
    env.update(
        OTEL_SERVICE_NAME="multiworker",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=rotel.grpc_endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_EXPORTER_OTLP_TIMEOUT="400",
        PYTHONPATH=str(HERE),
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "-w",
            str(WORKERS),
            "--bind",
            f"127.0.0.1:{port}",
            "multiworker_app:app",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        sent = 0
        while sent < REQUESTS and time.monotonic() < deadline:
            try:
                # A new connection per request, so the kernel spreads them over workers.
                with httpx.Client(timeout=5) as client:
                    client.get(
                        f"http://127.0.0.1:{port}/", headers={"Connection": "close"}
                    )
                sent += 1
            except httpx.HTTPError:
                time.sleep(0.1)
        assert sent == REQUESTS
        deadline = time.monotonic() + 30
        totals: dict[str, float] = {}
        while time.monotonic() < deadline:
            totals = {}
            for point in rotel.points():
                if point.metric == "worker.requests" and point.value is not None:
                    totals[point.resource["service.instance.id"]] = point.value
            if len(totals) == WORKERS and sum(totals.values()) == REQUESTS:
                break
            time.sleep(0.3)
        assert len(totals) == WORKERS, totals
        assert sum(totals.values()) == REQUESTS
    finally:
        stop_process(server, grace=20)
        rotel.stop()
