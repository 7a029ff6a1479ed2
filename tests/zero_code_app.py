"""
Plain web apps with no ron-metrics code: what ``ron-metrics run`` instruments.

``fastapi_app`` (for uvicorn), ``flask_app`` (for gunicorn); both count their own
``zero_code.jobs`` through the OpenTelemetry API, which works because the runner
installed the global MeterProvider before this module ran.
"""

from __future__ import annotations

from fastapi import FastAPI
from flask import Flask
from opentelemetry import metrics

jobs = metrics.get_meter("zero_code").create_counter("zero_code.jobs")

fastapi_app = FastAPI(telemetry={"metrics": False})


@fastapi_app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    jobs.add(1)
    return {"item_id": item_id}


flask_app = Flask(__name__)


@flask_app.get("/users/<int:user_id>")
def user(user_id: int) -> dict[str, int]:
    jobs.add(1)
    return {"user_id": user_id}
