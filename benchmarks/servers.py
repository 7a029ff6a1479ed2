"""
HTTP servers for the wrk runs, each in its own process: ``python servers.py KIND PORT SERIES``.

- ``ron``: ron-metrics' exposer (single-flight collection, guards, hypercorn).
- ``prometheus-client``: prometheus_client.start_http_server on a registry.
- ``naive-quart``: a plain Quart app on hypercorn whose /metrics runs
  PrometheusMetricReader + generate_latest per request (no single-flight).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading


def _ron_cap4(port: int, series: int) -> None:
    # Four connection slots and no timer that could free one within a drill.
    _ron(port, series, max_connections=4, write_timeout="300s", idle_timeout="300s")


def _ron(port: int, series: int, **prometheus: object) -> None:
    from ron_metrics import start
    from ron_metrics.testing import config_for_tests

    runtime = start(
        config_for_tests(
            # As the peers' registries: no process collectors (same work).
            runtime_metrics={"enabled": False},
            cardinality={"max_series": series + 10},
            exporter={
                "kind": "prometheus",
                "prometheus": {"bind": f"127.0.0.1:{port}", **prometheus},
            },
        ),
        set_global=False,
    )
    counter = runtime.get_meter("bench").create_counter("requests")
    for i in range(series):
        counter.add(1, {"key": f"key-{i:07d}"})
    _wait_and(runtime.shutdown)


def _prometheus_client(port: int, series: int) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    counter = Counter("requests", "Requests.", ["key"], registry=registry)
    for i in range(series):
        counter.labels(f"key-{i:07d}").inc()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    _wait_and(server.shutdown)


def _naive_quart(port: int, series: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import Counter as SdkCounter
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, generate_latest
    from quart import Quart, Response

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(
        registry=registry, cardinality_limits={SdkCounter: series + 10}
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("bench").create_counter("requests")
    for i in range(series):
        counter.add(1, {"key": f"key-{i:07d}"})
    app = Quart("naive")
    lock = threading.Lock()

    def collect() -> bytes:
        with lock:  # the reader's collector is not safe to run concurrently
            return generate_latest(registry)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = await asyncio.get_running_loop().run_in_executor(None, collect)
        return Response(body, content_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n")

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(main())


def _wait_and(stop: object) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    stop()  # type: ignore[operator]  # a shutdown callable of either server


if __name__ == "__main__":
    kind, port, series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {
        "ron": _ron,
        "ron-cap4": _ron_cap4,
        "prometheus-client": _prometheus_client,
        "naive-quart": _naive_quart,
    }[kind](port, series)
