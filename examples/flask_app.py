"""
Flask on gunicorn, measured by ron-metrics' WSGI middleware.

    gunicorn examples.flask_app:app --bind 127.0.0.1:8000
    curl -s http://127.0.0.1:9464/metrics | grep http_server

One worker here; with several (``-w 4``), set ``RON_METRICS_MULTIPROCESS__DIR`` so
the workers share one port with the group's totals (see docs/multi-worker.md).
"""

from __future__ import annotations

from flask import Flask

import ron_metrics
from ron_metrics.wsgi import MetricsMiddleware

runtime = ron_metrics.start(
    ron_metrics.load_config(
        defaults={
            "service": {"name": "flask-example"},
            "exporter": {"prometheus": {"bind": "127.0.0.1:9464"}},
        }
    )
)

app = Flask(__name__)
app.wsgi_app = MetricsMiddleware(app.wsgi_app, route_app=app)


@app.get("/users/<int:user_id>")
def user(user_id: int) -> dict[str, int]:
    return {"user_id": user_id}


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("boom")
