"""
The Quart app: three GET routes, thin over the guards, the coalescer and health.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

from quart import Quart, Response, g, has_request_context, request

from ron_metrics.config import PrometheusConfig
from ron_metrics.exporters.prometheus._verdicts import VERDICT_SCOPE_KEY
from ron_metrics.exporters.prometheus.guards import (
    Rejection,
    RequestHead,
    Verdict,
    client_text,
    rejection,
)
from ron_metrics.exporters.prometheus.render import (
    ResponseTooLargeError,
    accepts_gzip,
    negotiate_format,
)
from ron_metrics.exporters.prometheus.scrape import ScrapeCoalescer
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthSnapshot
from ron_metrics.logs import RateLimitedLog, log_event

__all__ = ["ExposerState", "create_app"]

ACCESS_LOG = logging.getLogger("ron_metrics.access")
_CORR_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
)
RETRY_AFTER_SECONDS = "1"


@dataclass
class ExposerState:
    """
    What the routes need, owned by the server.
    """

    config: PrometheusConfig
    service: str
    coalescer: ScrapeCoalescer
    readiness: Callable[[], HealthSnapshot]
    self_metrics: SelfMetrics
    in_flight: int = 0
    # Bytes of /metrics bodies not yet fully written, over all connections.
    pending_bytes: int = 0


def _json_body(snapshot: HealthSnapshot) -> str:
    if snapshot.ready:
        return json.dumps({"ready": True})
    return json.dumps({"ready": False, "degraded": list(snapshot.degraded)})


def _reject(state: ExposerState, refusal: Rejection) -> Response:
    state.self_metrics.rejected.add(1, {"reason": refusal.reason})
    response = Response(refusal.message + "\n", refusal.status, mimetype="text/plain")
    for name, value in refusal.headers:
        response.headers[name] = value
    if refusal.close:
        response.headers["Connection"] = "close"
    g.reject_reason = refusal.reason
    return response


# Bodies are written in slices of this size, each awaited until the transport
# takes it: a client that does not read holds one slice, not a copy of the body.
BODY_CHUNK_BYTES = 64 * 1024


async def _slices(body: bytes) -> AsyncIterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(view), BODY_CHUNK_BYTES):
        yield bytes(view[start : start + BODY_CHUNK_BYTES])


def _busy(state: ExposerState) -> Response:
    return _reject(state, rejection("busy", ("Retry-After", RETRY_AFTER_SECONDS)))


def _stream(state: ExposerState, body: bytes, content_type: str) -> Response:
    size = len(body)
    state.pending_bytes += size

    def written() -> None:
        state.pending_bytes -= size

    g.verdict.finished.append(written)
    response = Response(_slices(body), 200, content_type=content_type)
    response.headers["Content-Length"] = str(size)
    return response


async def _serve_metrics(state: ExposerState) -> Response:
    fmt = negotiate_format(
        request.headers.get("Accept"), protobuf=state.coalescer.protobuf
    )
    gzip_ok = state.config.gzip and accepts_gzip(request.headers.get("Accept-Encoding"))
    if state.pending_bytes >= state.config.max_pending_bytes:
        # Readers that do not read already hold the budget: do not even collect.
        return _busy(state)
    started = time.perf_counter()
    try:
        rendered = await asyncio.wait_for(
            state.coalescer.get(fmt, gzip_ok=gzip_ok), state.config.scrape_timeout
        )
    except TimeoutError:
        state.self_metrics.io_timeouts.add(1, {"op": "render"})
        g.reject_reason = "render_timeout"
        return Response(
            "collection timed out\n",
            503,
            mimetype="text/plain",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    except ResponseTooLargeError:
        state.self_metrics.rejected.add(1, {"reason": "oversize"})
        g.reject_reason = "oversize"
        return Response(
            "response over the configured size bound\n", 500, mimetype="text/plain"
        )
    state.self_metrics.exposition_latency.record(time.perf_counter() - started)
    pending = state.pending_bytes
    if pending and pending + len(rendered.body) > state.config.max_pending_bytes:
        # Concurrent scrapes share one body, but each slow reader keeps it alive.
        # (A lone body bigger than the budget is still served: max_response_bytes
        # bounds that.)
        return _busy(state)
    response = _stream(state, rendered.body, rendered.content_type)
    if rendered.gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept, Accept-Encoding"
    return response


_ERROR_LOG = RateLimitedLog(logging.getLogger("ron_metrics.exposer"))


class _ExposerApp(Quart):
    """
    Quart, with its unhandled-exception report as one rate-limited JSON line.

    Quart's own report is a traceback through a handler it adds to the app's
    logger when nothing handles that logger yet, which would also rewrap every
    later line of ours; the exception's type and text are what an operator needs.
    """

    def log_exception(
        self,
        exception_info: tuple[type, BaseException, TracebackType]
        | tuple[None, None, None],
    ) -> None:
        verdict = g.get("verdict") if has_request_context() else None
        _ERROR_LOG.log(
            logging.ERROR,
            "exposer_exception",
            endpoint=client_text(verdict.head.target) if verdict else "",
            error=repr(exception_info[1]),
        )


def create_app(state: ExposerState) -> Quart:
    """
    Build the exposer's Quart app over ``state``.
    """
    app = _ExposerApp("ron_metrics.exposer")
    # Quart would attach its own handler (and a queue thread) to this logger.
    app.logger = logging.getLogger("ron_metrics.exposer.quart")
    app.config["MAX_CONTENT_LENGTH"] = 0
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    @app.before_request
    async def guard() -> Response | None:
        g.started = time.perf_counter()
        supplied = request.headers.get("X-Request-Id", "")
        g.corr_id = supplied if _CORR_ID.match(supplied) else secrets.token_hex(8)
        g.reject_reason = None
        verdict = request.scope.get(VERDICT_SCOPE_KEY)
        if not isinstance(verdict, Verdict):
            # Every head reaches the app through the wire parser, which names its
            # verdict; a request without one did not, and is refused.
            verdict = Verdict(RequestHead(), rejection("malformed"))
        g.verdict = verdict
        if verdict.rejection is not None:
            return _reject(state, verdict.rejection)
        if state.in_flight >= state.config.max_in_flight:
            return _busy(state)
        state.in_flight += 1

        def done() -> None:
            # Runs once the last byte is written (or the request is dropped).
            state.in_flight -= 1

        verdict.finished.append(done)
        return None

    @app.after_request
    async def finish(response: Response) -> Response:
        for name, value in _SECURITY_HEADERS:
            response.headers[name] = value
        response.headers["X-Request-Id"] = g.get("corr_id", "")
        started = g.get("started", time.perf_counter())
        sent: RequestHead = g.get("verdict", Verdict(RequestHead())).head
        log_event(
            ACCESS_LOG,
            logging.INFO,
            "request",
            service=state.service,
            endpoint=client_text(sent.target),
            method=client_text(sent.method),
            status=response.status_code,
            reason=g.get("reject_reason"),
            peer_addr=request.remote_addr,
            user_agent=client_text(sent.header(b"user-agent") or b""),
            corr_id=g.get("corr_id"),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return response

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", 200, mimetype="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        snapshot = state.readiness()
        response = Response(
            _json_body(snapshot),
            200 if snapshot.ready else 503,
            mimetype="application/json",
        )
        if not snapshot.ready:
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response

    @app.get("/metrics")
    async def metrics() -> Response:
        return await _serve_metrics(state)

    return app
