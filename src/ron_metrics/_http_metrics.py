"""
HTTP server metrics on the stable OpenTelemetry semantic conventions, shared by the
ASGI and WSGI middleware.

Instruments (meter ``ron_metrics.http``, so the configured allowlists and series
limits apply):

- ``http.server.request.duration`` (histogram, ``s``, the conventions' buckets),
- ``http.server.active_requests`` (up-down counter),
- ``http.server.request.body.size`` / ``http.server.response.body.size``
  (histograms, ``By``; only when asked for).

Attributes: ``http.request.method`` (a known method, else ``_OTHER``), ``http.route``
(the route **template**; a request no route matched gets none — never the raw path,
which would make a series per URL), ``http.response.status_code``, ``url.scheme``,
``network.protocol.version``, and ``error.type`` (the exception's class, or the
status code of a 5xx answer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Histogram, MeterProvider, UpDownCounter

from ron_metrics.views import SECONDS_BUCKETS

__all__ = ["KNOWN_METHODS", "HttpMetrics", "method_attribute", "werkzeug_route"]

METER_NAME = "ron_metrics.http"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_SIZE_BUCKETS = (0, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def method_attribute(method: str) -> str:
    """
    ``http.request.method``: a known method as is, anything else ``_OTHER``.
    """
    return method if method in KNOWN_METHODS else "_OTHER"


def werkzeug_route(app: Any, path: str, method: str) -> str | None:
    """
    The route template Flask or Quart would match ``path`` with, if any.
    """
    url_map = getattr(app, "url_map", None)
    if url_map is None:
        return None
    try:
        rule, _ = url_map.bind("localhost").match(path, method=method, return_rule=True)
    except Exception:  # no match, wrong method, redirect: no route attribute
        return None
    template: str = rule.rule
    return template


@dataclass(frozen=True, slots=True)
class _Instruments:
    duration: Histogram
    active: UpDownCounter
    request_size: Histogram | None
    response_size: Histogram | None


class HttpMetrics:
    """
    The instruments and the attribute rules, created on first use.

    Args:
        meter_provider: Where the instruments live; the OpenTelemetry global
            (the one ``ron_metrics.start()`` installs) when ``None``.
        excluded_paths: Paths not measured at all (exact matches).
        body_sizes: Also record request and response body sizes.
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        excluded_paths: Iterable[str] = (),
        body_sizes: bool = False,
    ) -> None:
        self._provider = meter_provider
        self.excluded_paths = frozenset(excluded_paths)
        self._body_sizes = body_sizes
        self._instruments: _Instruments | None = None

    @property
    def instruments(self) -> _Instruments:
        """
        The instruments (created from the provider on first use, so the middleware
        can be installed before ``ron_metrics.start()``).
        """
        if self._instruments is None:
            provider = self._provider or metrics.get_meter_provider()
            meter = provider.get_meter(METER_NAME)
            sizes = None
            if self._body_sizes:
                sizes = (
                    meter.create_histogram(
                        "http.server.request.body.size",
                        unit="By",
                        description="Size of HTTP server request bodies.",
                        explicit_bucket_boundaries_advisory=_SIZE_BUCKETS,
                    ),
                    meter.create_histogram(
                        "http.server.response.body.size",
                        unit="By",
                        description="Size of HTTP server response bodies.",
                        explicit_bucket_boundaries_advisory=_SIZE_BUCKETS,
                    ),
                )
            self._instruments = _Instruments(
                duration=meter.create_histogram(
                    "http.server.request.duration",
                    unit="s",
                    description="Duration of HTTP server requests.",
                    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
                ),
                active=meter.create_up_down_counter(
                    "http.server.active_requests",
                    unit="{request}",
                    description="Number of active HTTP server requests.",
                ),
                request_size=sizes[0] if sizes else None,
                response_size=sizes[1] if sizes else None,
            )
        return self._instruments

    def finished(
        self,
        base: dict[str, str],
        *,
        seconds: float,
        status: int | None,
        route: str | None,
        error: BaseException | None,
        request_bytes: int,
        response_bytes: int,
        client_gone: bool = False,
    ) -> None:
        """
        Record one finished request (its duration ends at the last byte or the error).

        The status recorded is the one the client got: an exception that escapes
        the app before a response started is answered 500 by the framework or the
        server, so 500 is recorded (with ``error.type``, the exception's class).
        When the client had already disconnected, nothing reached it: no status
        code, only ``error.type``.
        """
        if error is not None and status is None and not client_gone:
            status = 500
        attributes: dict[str, str | int] = dict(base)
        if route:
            attributes["http.route"] = route
        if status is not None:
            attributes["http.response.status_code"] = status
        if error is not None:
            attributes["error.type"] = type(error).__qualname__
        elif status is not None and status >= 500:
            attributes["error.type"] = str(status)
        instruments = self.instruments
        instruments.duration.record(seconds, attributes)
        if instruments.request_size is not None and instruments.response_size:
            instruments.request_size.record(request_bytes, attributes)
            instruments.response_size.record(response_bytes, attributes)
