"""
The multi-worker recipe as a runnable ASGI app (see docs/multi-worker.md):

    OTEL_SERVICE_NAME=api OTEL_METRICS_EXPORTER=otlp \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \\
    hypercorn -w 4 multiworker_app:app

Each worker process calls ``ron_metrics.start_async()`` in its lifespan startup (after
the fork/spawn), so each has its own provider and its own ``service.instance.id``
(``HOST-PID`` by default), and pushes its own series.
"""

from __future__ import annotations

from typing import Any

import ron_metrics

_state: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                runtime = await ron_metrics.start_async(ron_metrics.load_config())
                counter = runtime.get_meter("worker").create_counter("worker.requests")
                counter.add(0)  # every worker reports its series, even before traffic
                _state.update(runtime=runtime, counter=counter)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _state["runtime"].shutdown_async()  # final flush
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        _state["counter"].add(1)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok\n"})
