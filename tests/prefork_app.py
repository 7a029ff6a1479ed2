"""
An app for pre-fork servers: ron-metrics started at module level, as a user would.

Configured from the environment (``RON_METRICS_*``), so the same module runs under
gunicorn (``wsgi`` or, with the uvicorn worker, ``asgi``), ``uvicorn --workers``
and ``hypercorn -w``. Each request adds one to ``prefork_requests_total`` and is
answered with the serving process's PID.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics

import ron_metrics

runtime = ron_metrics.start(ron_metrics.load_config())
requests = metrics.get_meter("prefork").create_counter("prefork.requests")
in_flight = metrics.get_meter("prefork").create_up_down_counter("prefork.in_flight")


def wsgi(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    in_flight.add(1)
    requests.add(1)
    in_flight.add(-1)
    start_response("200 OK", [("content-type", "text/plain")])
    return [f"{os.getpid()}\n".encode()]


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    in_flight.add(1)
    requests.add(1)
    in_flight.add(-1)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": f"{os.getpid()}\n".encode()})
