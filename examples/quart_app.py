"""
Quart on hypercorn, measured by ron-metrics' ASGI middleware.

    hypercorn examples.quart_app:app --bind 127.0.0.1:8000
    curl -s http://127.0.0.1:9464/metrics | grep http_server
"""

from __future__ import annotations

from quart import Quart

import ron_metrics
from ron_metrics.asgi import MetricsMiddleware

runtime = ron_metrics.start(
    ron_metrics.load_config(
        defaults={
            "service": {"name": "quart-example"},
            "exporter": {"prometheus": {"bind": "127.0.0.1:9464"}},
        }
    )
)

quart_app = Quart(__name__)


@quart_app.get("/orders/<int:order_id>")
async def order(order_id: int) -> dict[str, int]:
    return {"order_id": order_id}


app = MetricsMiddleware(quart_app)
