"""
FastAPI on uvicorn, measured by ron-metrics' ASGI middleware.

    uvicorn examples.fastapi_app:app --port 8000
    curl -s http://127.0.0.1:9464/metrics | grep http_server

Metrics are served on the ron-metrics exposer (RON_METRICS_EXPORTER__PROMETHEUS__BIND,
default 127.0.0.1:9464 here).
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


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/fail")
async def fail() -> None:
    raise HTTPException(status_code=503, detail="down for a moment")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
