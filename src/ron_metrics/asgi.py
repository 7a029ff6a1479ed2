"""
ASGI middleware: HTTP server metrics for Starlette, FastAPI, Quart and any ASGI app.

    from ron_metrics.asgi import MetricsMiddleware
    app = MetricsMiddleware(app)                  # any ASGI app
    app.add_middleware(MetricsMiddleware)         # Starlette / FastAPI

The route template comes from the framework's router: ``scope["route"]`` (Starlette,
FastAPI) or the app's Werkzeug ``url_map`` (Quart). A request no route matched gets
no ``http.route`` — never the raw path. A request's duration ends when its last body
byte is sent (streaming responses included); WebSocket connections are not counted
as requests; exceptions are recorded as ``error.type`` and re-raised unchanged. The
status recorded is the one the client got: an exception before the response started
records 500 (what the framework or server answers); a client that disconnected
before any response records no status code, only ``error.type``.

FastAPI (0.16x and later) records the same instruments itself when its built-in
telemetry is on and a MeterProvider is installed; for such requests this middleware
records nothing, so there is one family, not two. ``FastAPI(telemetry={"metrics":
False})`` hands the job to this middleware.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from opentelemetry.metrics import MeterProvider

from ron_metrics._http_metrics import HttpMetrics, method_attribute, werkzeug_route

__all__ = ["MetricsMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _fastapi_measures(scope: Scope) -> bool:
    # FastAPI's built-in telemetry records the same instruments (meter "fastapi")
    # when it handles a request with metrics on: recording them again would make
    # a second family with the same name.
    if scope.get("fastapi.telemetry") is None:
        return False
    config = getattr(scope.get("app"), "_telemetry", None)
    return isinstance(config, dict) and bool(config.get("metrics"))


class MetricsMiddleware:
    """
    Record ``http.server.*`` metrics for every HTTP request an ASGI app serves.

    Args:
        app: The ASGI application.
        meter_provider: Where the instruments live (default: the OpenTelemetry
            global, which ``ron_metrics.start()`` installs).
        excluded_paths: Paths not measured (e.g. ``["/healthz"]``).
        body_sizes: Also record request and response body sizes.
        route_app: The Werkzeug-routed app (Quart) whose ``url_map`` names the route
            when ``app`` is not that app itself (e.g. its ``asgi_app``).
    """

    def __init__(
        self,
        app: Any,
        *,
        meter_provider: MeterProvider | None = None,
        excluded_paths: Iterable[str] = (),
        body_sizes: bool = False,
        route_app: Any = None,
    ) -> None:
        self.app = app
        self._metrics = HttpMetrics(
            meter_provider=meter_provider,
            excluded_paths=excluded_paths,
            body_sizes=body_sizes,
        )
        # Quart (and other Werkzeug-routed apps) expose their routes as a url_map.
        routed = route_app if route_app is not None else app
        self._url_map_app = routed if hasattr(routed, "url_map") else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("path") in self._metrics.excluded_paths
            or _fastapi_measures(scope)
        ):
            await self.app(scope, receive, send)
            return
        method = method_attribute(str(scope.get("method", "")))
        base = {
            "http.request.method": method,
            "url.scheme": str(scope.get("scheme", "http")),
            "network.protocol.version": str(scope.get("http_version", "1.1")),
        }
        active = {"http.request.method": method, "url.scheme": base["url.scheme"]}
        instruments = self._metrics.instruments
        instruments.active.add(1, active)
        started = time.perf_counter()
        status: int | None = None
        sizes = [0, 0]
        finished = False
        client_gone = False

        def finish(error: BaseException | None) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            instruments.active.add(-1, active)
            self._metrics.finished(
                base,
                seconds=time.perf_counter() - started,
                status=status,
                route=self._route(scope),
                error=error,
                request_bytes=sizes[0],
                response_bytes=sizes[1],
                client_gone=client_gone,
            )

        async def counting_receive() -> Message:
            nonlocal client_gone
            message = await receive()
            if message.get("type") == "http.request":
                sizes[0] += len(message.get("body", b""))
            elif message.get("type") == "http.disconnect":
                client_gone = True
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sizes[1] += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" and not message.get(
                "more_body", False
            ):
                finish(None)

        try:
            await self.app(scope, counting_receive, recording_send)
        except BaseException as exc:
            finish(exc)
            raise
        finish(None)

    def _route(self, scope: Scope) -> str | None:
        route = scope.get("route")
        if route is not None:
            template = getattr(route, "path_format", None) or getattr(
                route, "path", None
            )
            return str(template) if template else None
        if self._url_map_app is not None:
            return werkzeug_route(
                self._url_map_app,
                str(scope.get("path", "")),
                str(scope.get("method", "")),
            )
        return None
