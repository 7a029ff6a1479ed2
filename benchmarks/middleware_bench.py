"""
Per-request overhead of HTTP server middleware on the same FastAPI app.

Every variant serves ``GET /items/{item_id}`` from the same FastAPI app, driven
in-process through the ASGI interface (no network, so the middleware's own cost is
not lost in socket noise). Each variant runs in a fresh interpreter; overhead is
the variant's time per request minus the bare app's, measured in the same round.
Same work on every side: one request duration histogram and an in-flight gauge
or counter per request; the OpenTelemetry ASGI middleware runs with an SDK
MeterProvider and the no-op tracer (metrics only).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

from common import Figure

_APP = """
import asyncio, time
from fastapi import FastAPI
app = FastAPI()

@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"item_id": item_id}
"""

_VARIANTS = {
    "bare app": "served = app\n",
    "ron-metrics": """
import ron_metrics
from ron_metrics.asgi import MetricsMiddleware
runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "b"},
    exporter={"kind": "none"}), set_global=False)
app.add_middleware(MetricsMiddleware, meter_provider=runtime.meter_provider)
served = app
""",
    "starlette_exporter": """
from starlette_exporter import PrometheusMiddleware
app.add_middleware(PrometheusMiddleware, group_paths=True)
served = app
""",
    "prometheus-fastapi-instrumentator": """
from prometheus_fastapi_instrumentator import Instrumentator
Instrumentator().instrument(app)
served = app
""",
    "opentelemetry-instrumentation-asgi": """
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
served = OpenTelemetryMiddleware(app, meter_provider=provider)
""",
}

_DRIVE = """
async def drive(n):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/items/7", "raw_path": b"/items/7",
             "root_path": "", "query_string": b"", "headers": [(b"host", b"bench")],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000)}
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        pass
    for _ in range(n):
        await served(dict(scope), receive, send)

asyncio.run(drive(500))
started = time.perf_counter_ns()
asyncio.run(drive({requests}))
print((time.perf_counter_ns() - started) / {requests} / 1000)
"""


def _time(variant: str, requests: int) -> float:
    code = (
        textwrap.dedent(_APP)
        + textwrap.dedent(_VARIANTS[variant])
        + textwrap.dedent(_DRIVE).replace("{requests}", str(requests))
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return float(out.strip().splitlines()[-1])


def measure(requests: int, repeats: int) -> dict[str, Any]:
    """
    Microseconds per request for every variant, and each middleware's overhead.
    """
    per_request = {name: Figure(name, "µs") for name in _VARIANTS}
    overhead = {name: Figure(name, "µs") for name in _VARIANTS if name != "bare app"}
    for _ in range(repeats):
        # One round: every variant once, so drift hits all of them alike.
        round_ = {name: _time(name, requests) for name in _VARIANTS}
        for name, value in round_.items():
            per_request[name].values.append(value)
            if name in overhead:
                overhead[name].values.append(value - round_["bare app"])
    return {"requests": requests, "per_request": per_request, "overhead": overhead}


if __name__ == "__main__":
    found = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, 3)
    for name, figure in found["overhead"].items():
        print(f"{name:40} {figure.text(2)} µs/request overhead")
