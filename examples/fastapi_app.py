"""
FastAPI on uvicorn, measured by ron-metrics' ASGI middleware.

    uvicorn examples.fastapi_app:app --port 8000
    curl -s http://127.0.0.1:9464/metrics | grep http_server

Metrics are served on the ron-metrics exposer (RON_METRICS_EXPORTER__PROMETHEUS__BIND,
default 127.0.0.1:9464 here).

With opentelemetry-instrumentation-asgi installed, every request is also traced
(the OpenTelemetry tracing SDK, the W3C ``traceparent`` header honoured): the
request-duration histogram then keeps, per bucket, the trace of the latest
sampled request, and an OpenMetrics scrape carries it as an exemplar::

    curl -s -H 'Accept: application/openmetrics-text;version=1.0.0' \
        http://127.0.0.1:9464/metrics | grep trace_id
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException

import ron_metrics
from ron_metrics.asgi import MetricsMiddleware

runtime = ron_metrics.start(
    ron_metrics.load_config(
        defaults={
            "service": {"name": "fastapi-example"},
            "exporter": {"prometheus": {"bind": "127.0.0.1:9464"}},
        }
    )
)

# FastAPI's own telemetry would record the same instruments; let the middleware do it.
app = FastAPI(telemetry={"metrics": False})
app.add_middleware(MetricsMiddleware, excluded_paths=["/healthz"])

try:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    traced = True
except ImportError:  # tracing is optional: metrics work without it
    traced = False

if traced:
    from opentelemetry import trace
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    # Added last, so outermost: the request's span is current while the metrics
    # middleware records. Its own metrics are off (ours measure the requests).
    app.add_middleware(
        OpenTelemetryMiddleware,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["receive", "send"],
    )


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/fail")
async def fail() -> None:
    raise HTTPException(status_code=503, detail="down for a moment")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
