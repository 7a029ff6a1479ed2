"""
OTLP: export time for N series to a real rotel; add() latency idle, during an export,
during a collector outage, and during a live exporter switch.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, cast

from common import NO_RUNTIME, Figure, free_port, percentile

from ron_metrics import start
from ron_metrics.exporters.otlp import OtlpSink
from ron_metrics.testing import config_for_tests


class Rotel:
    """rotel-agent on loopback, output discarded (we time the export, not the log)."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("rotel")
        if spec is None or spec.origin is None:
            raise RuntimeError("rotel is not installed (pip install --pre rotel)")
        self.binary = str(Path(spec.origin).parent / "rotel-agent")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{free_port()}",
                "--exporter",
                "blackhole",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("rotel did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _add_latencies(
    counter: Any, seconds: float, stop: threading.Event | None = None
) -> list[float]:
    """add() latencies in microseconds for ``seconds`` (or until ``stop``)."""
    latencies: list[float] = []
    attrs = [{"route": f"/r{i}"} for i in range(20)]
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline and not (stop and stop.is_set()):
        started = time.perf_counter_ns()
        counter.add(1, attrs[i % 20])
        latencies.append((time.perf_counter_ns() - started) / 1000)
        i += 1
    return latencies


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "n": float(len(latencies)),
    }


def measure(series: int, repeats: int, window: float) -> dict[str, Any]:
    rotel = Rotel()
    rotel.start()
    config = config_for_tests(
        **NO_RUNTIME,
        cardinality={"max_series": series + 100},
        exporter={
            "kind": "otlp",
            "otlp": {"endpoint": rotel.endpoint, "interval": "1h", "timeout": "5s"},
        },
    )
    runtime = start(config, set_global=False)
    try:
        wide = runtime.get_meter("bench").create_counter("wide")
        for i in range(series):
            wide.add(1, {"key": f"key-{i:07d}"})
        sink = cast("OtlpSink | None", runtime._engine.sink("otlp"))
        assert sink is not None
        export = Figure("export", "ms")
        for _ in range(repeats):
            started = time.perf_counter()
            ok = sink.export_once(timeout=30)
            export.values.append((time.perf_counter() - started) * 1000)
            assert ok, "export to rotel failed"
        hot = runtime.get_meter("bench").create_counter("hot")
        idle = _add_latencies(hot, window)
        busy_stop = threading.Event()

        def keep_exporting() -> None:
            while not busy_stop.is_set():
                sink.export_once(timeout=30)

        exporter = threading.Thread(target=keep_exporting)
        exporter.start()
        during_export = _add_latencies(hot, window)
        busy_stop.set()
        exporter.join(60)
        rotel.stop()  # outage: exports now retry with backoff until their timeout
        outage_stop = threading.Event()
        failing = threading.Thread(
            target=lambda: [sink.export_once(timeout=2) for _ in range(3)]
        )
        failing.start()
        during_outage = _add_latencies(hot, window, outage_stop)
        failing.join(30)
        rotel.start()
        switch_latencies: list[float] = []
        stop_switch = threading.Event()
        measuring = threading.Thread(
            target=lambda: switch_latencies.extend(_add_latencies(hot, 60, stop_switch))
        )
        measuring.start()
        switch_started = time.perf_counter()
        runtime.reload(
            config_for_tests(
                **NO_RUNTIME,
                cardinality={"max_series": series + 100},
                exporter={
                    "kind": "prometheus",
                    "otlp": {
                        "endpoint": rotel.endpoint,
                        "interval": "1h",
                        "timeout": "5s",
                    },
                },
            ),
            timeout=30,
        )
        switch_seconds = time.perf_counter() - switch_started
        stop_switch.set()
        measuring.join(30)
        return {
            "series": series,
            "export_ms": export,
            "add_idle": _summary(idle),
            "add_during_export": _summary(during_export),
            "add_during_outage": _summary(during_outage),
            "add_during_switch": _summary(switch_latencies),
            "switch_seconds": switch_seconds,
        }
    finally:
        runtime.shutdown(timeout=10)
        rotel.stop()
