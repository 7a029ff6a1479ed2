"""
The Prometheus exposer as a sink: the embedded hypercorn server on our listener.

The socket comes from :class:`~.listener.Listener` (bound by us, shared with a
replacement sink during a reload); the accept loop and connection streams are
ours (:mod:`._wire`); the app is Quart (:mod:`.app`). Readiness needs the server
accepting and TLS handshakes mostly succeeding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from hypercorn.config import Config as HypercornConfig
from opentelemetry.sdk.metrics.export import MetricsData

from ron_metrics.config.model import PrometheusConfig
from ron_metrics.errors import ExporterError, ExposerError
from ron_metrics.exporters.prometheus._streams import WireLimits
from ron_metrics.exporters.prometheus._wire import GuardedServer
from ron_metrics.exporters.prometheus.app import ExposerState, create_app
from ron_metrics.exporters.prometheus.audit import WireAudit
from ron_metrics.exporters.prometheus.listener import Listener
from ron_metrics.exporters.prometheus.pipeline import scrape_pipeline
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthSnapshot
from ron_metrics.hub import HubReader
from ron_metrics.logs import log_event
from ron_metrics.safety import build_server_ssl_context

__all__ = ["PrometheusSink"]

_log = logging.getLogger("ron_metrics.exposer")
_START_POLL_S = 0.01


class PrometheusSink:
    """
    Serve ``/metrics``, ``/healthz`` and ``/readyz`` on a bound listener.

    Args:
        listener: A listener to serve (shared with the sink this one replaces);
            ``None`` binds ``config.bind`` at :meth:`start`.
        collect: What ``/metrics`` shows instead of this process's own collection.
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
        listener: Listener | None = None,
        collect: Callable[[], MetricsData] | None = None,
    ) -> None:
        self.config = config
        self._service = service
        self._hub = hub
        self._self_metrics = self_metrics
        self._readiness = readiness
        self._listener = listener
        self._collect = collect
        self._address: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._audit = WireAudit(self_metrics, max_connections=config.max_connections)
        self._app: Any = None
        self.server: GuardedServer | None = None

    @property
    def address(self) -> str:
        """
        Where the exposer listens: ``http(s)://HOST:PORT`` or ``unix:PATH``.

        Stays readable after :meth:`stop`, for logs and error messages.
        """
        if self._address is None:
            raise ExposerError("the exposer is not bound")
        return self._address

    def describe(self) -> Mapping[str, str]:
        """
        ``{"address": ...}`` once started.
        """
        return {"address": self._address} if self._address else {}

    def share_listener(self, config: PrometheusConfig) -> Listener | None:
        """
        This sink's listener for a successor with ``config``, when it binds the same address.
        """
        if self._listener is None or self._listener.bind_address != config.bind:
            return None
        return self._listener.share()

    def listening(self) -> bool:
        """
        True once our accept loop runs on the listener and the server task is alive.
        """
        return (
            self._listener is not None
            and self.alive()
            and self.server is not None
            and self.server.serving.is_set()
            and self._listener.accepting()
        )

    def readiness_check(self) -> str | None:
        """
        ``None`` when serving and TLS handshakes mostly succeed.
        """
        if not self.listening():
            return "not serving"
        if self._audit.tls_failing():
            return "tls_handshake_failures"
        return None

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
        # The connection cap is enforced after accept; a kernel queue sized to the
        # cap would drop the handshakes of a burst (clients then wait a SYN
        # retransmit, 1 s or more) instead of answering or refusing them at once.
        config.backlog = max(socket.SOMAXCONN, self.config.max_connections)
        config.accesslog = None
        config.errorlog = logging.getLogger("ron_metrics.hypercorn")
        # hypercorn's "Running on ..." banner is not ours to print; our own
        # "started" event carries the address.
        config.loglevel = "WARNING"
        return config

    async def start(self) -> None:
        """
        Build TLS material, bind (unless given a listener), serve; returns once accepting.

        Raises:
            ConfigError: If TLS files are unsafe or invalid.
            ExposerError: If the address cannot be bound or the server does not come up.
        """
        if self.config.tls.enabled:
            self._ssl = build_server_ssl_context(self.config.tls)
        if self._listener is None:
            self._listener = Listener.open(self.config.bind)
        self._address = self._listener.describe(tls=self._ssl is not None)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="ron-metrics-scrape"
        )
        state = ExposerState(
            config=self.config,
            service=self._service,
            coalescer=scrape_pipeline(
                self.config, self._hub, self._executor, self._collect
            ),
            readiness=self._readiness,
            self_metrics=self._self_metrics,
        )
        self._app = create_app(state)
        await self._launch()

    async def _launch(self) -> None:
        if self._listener is None or self._app is None:
            raise ExposerError("the exposer was not started")
        self._stop = asyncio.Event()
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
            events=self._audit,
            ssl_context=self._ssl,
        )
        # The server owns (and closes) a duplicate; the listener keeps the socket.
        self._task = asyncio.get_running_loop().create_task(
            self.server.serve(self._listener.duplicate(), self._stop.wait),
            name="ron-metrics-exposer",
        )
        for _ in range(500):
            if self.listening():
                return
            if self._task.done():
                break
            await asyncio.sleep(_START_POLL_S)
        error = self._task.exception() if self._task.done() else None
        where = self.address
        await self.stop(time.monotonic() + 5.0)
        raise ExposerError(f"the exposer did not start serving on {where}: {error!r}")

    async def prove(self, deadline: float) -> None:
        """
        Serving is the proof; :meth:`start` returned only once accepting.

        Raises:
            ExporterError: If the server is not accepting by ``deadline``.
        """
        while not self.listening():
            if time.monotonic() >= deadline:
                raise ExporterError(f"the exposer is not serving on {self._address}")
            await asyncio.sleep(_START_POLL_S)

    def alive(self) -> bool:
        """
        True while the server task runs (False after a crash, before a restart).
        """
        return self._task is not None and not self._task.done()

    async def restart(self) -> None:
        """
        Serve again on the same listener after the server task died.

        Raises:
            ExposerError: If it does not come back.
        """
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.exception()  # retrieved: the supervisor logged it
        await self._launch()

    async def stop(self, deadline: float, *, flush: bool = True) -> None:
        """
        Stop accepting, let in-flight requests finish by ``deadline``, release everything.

        ``flush`` has no meaning for a pull sink: scrapers take what they need.
        """
        timeout = max(0.1, deadline - time.monotonic())
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
            # Off the loop: a scrape still rendering must not stall other tasks.
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        if self._listener is not None:
            self._listener.release()
            self._listener = None
