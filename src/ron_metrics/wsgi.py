"""
WSGI middleware: HTTP server metrics for Flask and any WSGI app.

    from ron_metrics.wsgi import MetricsMiddleware
    app.wsgi_app = MetricsMiddleware(app.wsgi_app, route_app=app)   # Flask
    application = MetricsMiddleware(application)                    # any WSGI app

The route template comes from a Werkzeug ``url_map`` (Flask: pass the Flask app as
``route_app``). A request no route matched gets no ``http.route`` — never the raw
path. A request's duration ends when the response iterable is closed (its last
byte written); exceptions are recorded as ``error.type`` and re-raised unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.metrics import MeterProvider

from ron_metrics._http_metrics import HttpMetrics, method_attribute, werkzeug_route

__all__ = ["MetricsMiddleware"]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class MetricsMiddleware:
    """
    Record ``http.server.*`` metrics for every request a WSGI app serves.

    Args:
        app: The WSGI application.
        route_app: An app with a Werkzeug ``url_map`` to read route templates from
            (the Flask app when ``app`` is its ``wsgi_app``); ``app`` itself if it
            has one.
        meter_provider: Where the instruments live (default: the OpenTelemetry global).
        excluded_paths: Paths not measured (e.g. ``["/healthz"]``).
        body_sizes: Also record request and response body sizes.
    """

    def __init__(
        self,
        app: WsgiApp,
        *,
        route_app: Any = None,
        meter_provider: MeterProvider | None = None,
        excluded_paths: Iterable[str] = (),
        body_sizes: bool = False,
    ) -> None:
        self.app = app
        self._routes = route_app if route_app is not None else app
        self._metrics = HttpMetrics(
            meter_provider=meter_provider,
            excluded_paths=excluded_paths,
            body_sizes=body_sizes,
        )

    def __call__(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path in self._metrics.excluded_paths:
            return self.app(environ, start_response)
        raw_method = str(environ.get("REQUEST_METHOD", ""))
        method = method_attribute(raw_method)
        base = {
            "http.request.method": method,
            "url.scheme": str(environ.get("wsgi.url_scheme", "http")),
            "network.protocol.version": str(
                environ.get("SERVER_PROTOCOL", "HTTP/1.1")
            ).removeprefix("HTTP/"),
        }
        active = {"http.request.method": method, "url.scheme": base["url.scheme"]}
        instruments = self._metrics.instruments
        instruments.active.add(1, active)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None, "done": False}

        def recording_start_response(status: str, headers: Any, *args: Any) -> Any:
            state["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        def finish(error: BaseException | None, response_bytes: int) -> None:
            if state["done"]:
                return
            state["done"] = True
            instruments.active.add(-1, active)
            request_bytes = int(environ.get("CONTENT_LENGTH") or 0)
            self._metrics.finished(
                base,
                seconds=time.perf_counter() - started,
                status=state["status"],
                route=werkzeug_route(self._routes, path, raw_method),
                error=error,
                request_bytes=request_bytes,
                response_bytes=response_bytes,
            )

        try:
            body = self.app(environ, recording_start_response)
        except BaseException as exc:
            finish(exc, 0)
            raise
        return _Measured(body, finish)


class _Measured:
    """
    The app's response iterable, measured until it is closed.
    """

    def __init__(
        self, body: Iterable[bytes], finish: Callable[[BaseException | None, int], None]
    ) -> None:
        self._body = body
        self._finish = finish
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._body:
                self._sent += len(chunk)
                yield chunk
        except BaseException as exc:
            self._finish(exc, self._sent)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(None, self._sent)
