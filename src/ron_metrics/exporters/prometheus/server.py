"""
Sockets, TLS and the embedded hypercorn server for the exposer.

We bind the socket ourselves (so the real address is known, and UDS/TLS safety
lives in one place) and serve a duplicate of it from our own accept loop
(:mod:`._wire`). We do not call ``listen()``: ``asyncio.start_server`` does, so
``SO_ACCEPTCONN`` on our socket tells us the server is really accepting (readiness
proof). A high rate of failed TLS handshakes degrades readiness.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from hypercorn.config import Config as HypercornConfig
from opentelemetry.sdk.metrics.export import MetricsData

from ron_metrics.config import PrometheusConfig
from ron_metrics.errors import ExposerError
from ron_metrics.exporters.prometheus._streams import WireLimits
from ron_metrics.exporters.prometheus._wire import GuardedServer
from ron_metrics.exporters.prometheus.app import ExposerState, create_app
from ron_metrics.exporters.prometheus.encode import DirectEncoder
from ron_metrics.exporters.prometheus.render import (
    Format,
    Rendered,
    finish,
    finish_streaming,
    render,
)
from ron_metrics.exporters.prometheus.scrape import ScrapeCoalescer
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthSnapshot
from ron_metrics.hub import HubReader
from ron_metrics.logs import RateLimitedLog, log_event
from ron_metrics.safety import (
    SocketIdentity,
    bind_unix_socket,
    build_server_ssl_context,
    remove_unix_socket,
)

__all__ = ["PrometheusSink"]

_log = logging.getLogger("ron_metrics.exposer")
# At least this many failed TLS handshakes within the window, making up at least
# half of all handshakes in it, make the exposer not ready: a scraper with a wrong
# certificate. A rate, so one lucky success does not hide a failing scraper and a
# few failures among many successes do not flip readiness.
TLS_FAILURE_THRESHOLD = 5
TLS_FAILURE_WINDOW = 60.0
TLS_FAILURE_SHARE = 0.5
_TLS_HISTORY = 1024


def _bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ExposerError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return sock


class PrometheusSink:
    """
    The Prometheus exposer as a sink: bind, serve, prove readiness, stop.
    """

    name = "prometheus"

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        service: str,
        hub: HubReader,
        self_metrics: SelfMetrics,
        readiness: Callable[[], HealthSnapshot],
    ) -> None:
        self.config = config
        self._service = service
        self._hub = hub
        self._self_metrics = self_metrics
        self._readiness = readiness
        self._sock: socket.socket | None = None
        self._socket_identity: SocketIdentity | None = None
        self._address: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # (when, succeeded) for recent handshakes, oldest first.
        self._tls_handshakes: collections.deque[tuple[float, bool]] = collections.deque(
            maxlen=_TLS_HISTORY
        )
        self._audit = RateLimitedLog(_log)
        self.state: ExposerState | None = None
        self.server: GuardedServer | None = None
        self._app: Any = None
        self._crash_requested = False

    def bind(self) -> None:
        """
        Build TLS material and bind the socket (synchronously, so errors surface at start).

        Raises:
            ExposerError: If the address cannot be bound safely.
            ConfigError: If TLS files are unsafe or invalid.
        """
        bind = self.config.bind
        if self.config.tls.enabled:
            self._ssl = build_server_ssl_context(self.config.tls)
        if bind.path is not None:
            self._sock, self._socket_identity = bind_unix_socket(bind.path)
        else:
            self._sock = _bind_tcp(bind.host or "127.0.0.1", bind.port or 0)
            if not bind.is_loopback:
                log_event(_log, logging.WARNING, "public_bind", address=str(bind))
        self._address = self._describe_bound(self._sock)

    @property
    def address(self) -> str:
        """
        Where the exposer listens: ``http(s)://HOST:PORT`` or ``unix:PATH``.

        Stays readable after :meth:`stop`, for logs and error messages.
        """
        if self._address is None:
            raise ExposerError("the exposer is not bound")
        return self._address

    def _describe_bound(self, sock: socket.socket) -> str:
        if self.config.bind.path is not None:
            return f"unix:{self.config.bind.path}"
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{shown}:{port}"

    def listening(self) -> bool:
        """
        True once hypercorn accepts on our socket and its task is alive.
        """
        if self._sock is None or self._task is None or self._task.done():
            return False
        try:
            return bool(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            return False

    def readiness_check(self) -> str | None:
        """
        Health pull check: ``None`` when serving and TLS handshakes mostly succeed.
        """
        if not self.listening():
            return "not serving"
        now = time.monotonic()
        recent = self._tls_handshakes
        while recent and now - recent[0][0] > TLS_FAILURE_WINDOW:
            recent.popleft()
        failures = sum(1 for _, ok in recent if not ok)
        if failures >= TLS_FAILURE_THRESHOLD and failures >= TLS_FAILURE_SHARE * len(
            recent
        ):
            return "tls_handshake_failures"
        return None

    # -- WireEvents -----------------------------------------------------------

    def timeout(self, op: str, *, peer: str) -> None:
        """
        Count and log an I/O timeout (``read``, ``write`` or ``idle``).
        """
        self._self_metrics.io_timeouts.add(1, {"op": op})
        self._audit.log(logging.WARNING, f"{op}_timeout", op=op, peer_addr=peer)

    def refused_connection(self, *, peer: str) -> None:
        """
        Count and log a connection closed at once because the connection cap was reached.
        """
        self._self_metrics.rejected.add(1, {"reason": "connections"})
        self._audit.log(
            logging.WARNING,
            "connection_refused",
            reason="connections",
            limit=self.config.max_connections,
            peer_addr=peer,
        )

    def tls_handshake(self, *, ok: bool, peer: str, error: str = "") -> None:
        """
        Record a handshake (the client sent bytes); count and log it if it failed.
        """
        self._tls_handshakes.append((time.monotonic(), ok))
        if not ok:
            self._self_metrics.tls_handshake_failures.add(1)
            self._audit.log(
                logging.WARNING, "tls_handshake_failed", error=error, peer_addr=peer
            )

    def tls_probe(self, *, peer: str) -> None:
        """
        Count and log a TLS connection closed before the client sent a byte (a probe).
        """
        self._self_metrics.rejected.add(1, {"reason": "tls_probe"})
        self._audit.log(logging.INFO, "tls_probe", peer_addr=peer)

    def _hypercorn_config(self) -> HypercornConfig:
        config = HypercornConfig()
        config.alpn_protocols = ["http/1.1"]
        # Reads are bounded by our GuardedReader (read vs idle); hypercorn's own
        # read_timeout would cut idle keep-alive connections at the read bound.
        config.read_timeout = None
        config.keep_alive_timeout = self.config.idle_timeout
        config.h11_max_incomplete_size = self.config.max_header_bytes
        config.include_server_header = False
        config.graceful_timeout = 2.0
        config.backlog = self.config.max_connections
        config.accesslog = None
        config.errorlog = logging.getLogger("ron_metrics.hypercorn")
        # hypercorn's "Running on ..." banner is not ours to print; our own
        # "started" event carries the address.
        config.loglevel = "WARNING"
        return config

    async def start(self) -> None:
        """
        Start serving on the running loop; returns once hypercorn accepts.

        Raises:
            ExposerError: If the server does not come up.
        """
        if self._sock is None:
            self.bind()
        if self._sock is None:
            raise ExposerError("the exposer has no bound socket")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="ron-metrics-scrape"
        )
        self.state = ExposerState(
            config=self.config,
            service=self._service,
            coalescer=self._coalescer(self._executor),
            readiness=self._readiness,
            self_metrics=self._self_metrics,
        )
        self._app = create_app(self.state)
        await self._launch()

    def _coalescer(self, executor: concurrent.futures.Executor) -> ScrapeCoalescer:
        max_bytes = self.config.max_response_bytes
        if self.config.encoder == "reference":
            # The translate-then-encode path of opentelemetry-exporter-prometheus.
            def render_reference(families: Any, fmt: Format, gzip_ok: bool) -> Rendered:
                return render(families, fmt, gzip_ok=gzip_ok, max_bytes=max_bytes)

            return ScrapeCoalescer(self._hub.scrape, render_reference, executor)
        direct = DirectEncoder(
            target_info=self._hub.target_info,
            scope_labels=self._hub.scope_labels,
            on_clash=self._hub.report_clash,
        )

        def collect() -> MetricsData:
            return self._hub.capture() or MetricsData(resource_metrics=[])

        def render_direct(data: MetricsData, fmt: Format, gzip_ok: bool) -> Rendered:
            if gzip_ok:
                # Compressed as it is written: never a second full copy.
                return finish_streaming(
                    direct.chunks(data, fmt), fmt, max_bytes=max_bytes
                )
            return finish(
                direct.encode(data, fmt), fmt, gzip_ok=False, max_bytes=max_bytes
            )

        return ScrapeCoalescer(collect, render_direct, executor)

    async def _launch(self) -> None:
        if self._sock is None or self.state is None:
            raise ExposerError("the exposer was not started")
        self._stop = asyncio.Event()
        self._crash_requested = False
        limits = WireLimits(
            read_timeout=self.config.read_timeout,
            write_timeout=self.config.write_timeout,
            idle_timeout=self.config.idle_timeout,
            max_header_bytes=self.config.max_header_bytes,
            max_connections=self.config.max_connections,
        )
        self.server = GuardedServer(
            self._app,
            self._hypercorn_config(),
            limits=limits,
            events=self,
            ssl_context=self._ssl,
        )
        # start_server owns (and closes) the socket it serves: give it a duplicate,
        # so a restart can serve the very same bound address again.
        served = socket.socket(fileno=os.dup(self._sock.fileno()))
        self._task = asyncio.get_running_loop().create_task(
            self.server.serve(served, self._shutdown_trigger),
            name="ron-metrics-exposer",
        )
        for _ in range(500):
            if self.listening():
                return
            if self._task.done():
                break
            await asyncio.sleep(0.01)
        error = self._task.exception() if self._task.done() else None
        where = self.address
        await self.stop()
        raise ExposerError(f"the exposer did not start serving on {where}: {error!r}")

    async def _shutdown_trigger(self) -> None:
        if self._stop is not None:
            await self._stop.wait()
        if self._crash_requested:
            raise RuntimeError("injected exposer crash")

    def alive(self) -> bool:
        """
        True while the server task runs (False after a crash, before a restart).
        """
        return self._task is not None and not self._task.done()

    def inject_crash(self) -> None:
        """
        Testing hook: make the server task fail as if it had crashed.
        """
        self._crash_requested = True
        if self._stop is not None:
            self._stop.set()

    async def restart(self) -> None:
        """
        Serve again on the same bound socket after the server task died.

        Raises:
            ExposerError: If it does not come back.
        """
        if self._task is not None and self._task.done():
            self._task.exception()  # retrieved: the supervisor logged it
        await self._launch()

    async def stop(self, timeout: float = 5.0) -> None:
        """
        Stop accepting, let in-flight requests finish within ``timeout``, release everything.
        """
        if self.server is not None:
            # In-flight requests may finish within what is left of the deadline.
            self.server.graceful_timeout = max(0.1, timeout - 0.2)
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            except Exception as exc:
                log_event(_log, logging.ERROR, "exposer_failed", error=repr(exc))
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self.config.bind.path is not None and self._socket_identity:
                remove_unix_socket(self.config.bind.path, self._socket_identity)
                self._socket_identity = None
