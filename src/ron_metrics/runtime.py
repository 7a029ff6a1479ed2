"""
The runtime: builds the provider once, runs the sinks, owns lifecycle and readiness.

States: CREATED → STARTING → RUNNING → STOPPING → STOPPED. Shutdown order (one
deadline shared by all steps): readiness goes 503 (``draining``), the exposer stops
accepting and drains, the OTLP sink flushes once more, the provider shuts down.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider

from ron_metrics._loop import LoopThread
from ron_metrics.config import Config
from ron_metrics.errors import LifecycleError
from ron_metrics.exporters.prometheus.server import PrometheusSink
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.logs import log_event
from ron_metrics.provider import build_provider, install_global

__all__ = ["Runtime", "RuntimeState", "start", "start_async"]

_log = logging.getLogger("ron_metrics.runtime")
_T = TypeVar("_T")


class RuntimeState(enum.Enum):
    """
    Where a :class:`Runtime` is in its life.
    """

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Runtime:
    """
    A running ron-metrics instance. Create it with :func:`start` or :func:`start_async`.

    Use as a context manager, or call :meth:`shutdown` (idempotent).
    """

    def __init__(self, config: Config, *, set_global: bool) -> None:
        self.config = config
        self.state = RuntimeState.CREATED
        self.health = HealthRegistry()
        self._pid = os.getpid()
        self._set_global = set_global
        self._lock = threading.Lock()
        self._draining = False
        self._loop_thread: LoopThread | None = None
        self._host_loop: asyncio.AbstractEventLoop | None = None
        built = build_provider(config)
        self.meter_provider: MeterProvider = built.provider
        self.hub = built.hub
        self.self_metrics: SelfMetrics = built.self_metrics
        self.prometheus: PrometheusSink | None = None
        self.health.set("config", ok=True)
        self.health.add_check(
            "draining", lambda: "shutting down" if self._draining else None
        )

    # -- public API -------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """
        The exposer's real address (port 0 resolved), or ``None`` without an exposer.
        """
        return self.prometheus.address if self.prometheus is not None else None

    def get_meter(self, name: str, version: str | None = None) -> Meter:
        """
        A meter from this runtime's provider (same as the OTel global when installed).
        """
        self._check_process()
        return self.meter_provider.get_meter(name, version)

    def readiness(self) -> HealthSnapshot:
        """
        The current readiness verdict.
        """
        return self.health.snapshot()

    def shutdown(self, timeout: float = 5.0) -> None:
        """
        Stop everything within ``timeout`` seconds; safe to call more than once.
        """
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        try:
            if self._loop_thread is not None:
                self._loop_thread.run(self._stop_sinks(deadline), timeout=timeout + 1)
                self._loop_thread.close(max(0.1, deadline - time.monotonic()))
            elif self._host_loop is not None:
                raise LifecycleError(
                    "this runtime runs in an asyncio loop; use 'await runtime.shutdown_async()'"
                )
        finally:
            self._finish_stop(deadline)

    async def shutdown_async(self, timeout: float = 5.0) -> None:
        """
        Async twin of :meth:`shutdown` for runtimes made by :func:`start_async`.
        """
        if self._loop_thread is not None:
            await asyncio.to_thread(self.shutdown, timeout)
            return
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        try:
            await self._stop_sinks(deadline)
        finally:
            await asyncio.to_thread(self._finish_stop, deadline)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- internals ----------------------------------------------------------------

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise LifecycleError(
                "this Runtime was created in another process (inherited across fork);"
                " call ron_metrics.start() in the child, e.g. in the post-fork hook"
            )

    def _begin_stop(self) -> bool:
        with self._lock:
            if self.state in {RuntimeState.STOPPING, RuntimeState.STOPPED}:
                return False
            self._check_process()
            self.state = RuntimeState.STOPPING
            self._draining = True
        log_event(_log, logging.INFO, "stopping")
        return True

    def _finish_stop(self, deadline: float) -> None:
        remaining_ms = max(100.0, (deadline - time.monotonic()) * 1000)
        try:
            self.meter_provider.shutdown(timeout_millis=remaining_ms)
        finally:
            self.state = RuntimeState.STOPPED
            log_event(_log, logging.INFO, "stopped")

    async def _stop_sinks(self, deadline: float) -> None:
        if self.prometheus is not None:
            await self.prometheus.stop(max(0.1, deadline - time.monotonic()))

    async def _start_sinks(self) -> None:
        exporter = self.config.exporter
        if exporter.prometheus_enabled:
            sink = PrometheusSink(
                exporter.prometheus,
                service=self.config.service.name,
                hub=self.hub,
                self_metrics=self.self_metrics,
                readiness=self.health.snapshot,
            )
            sink.bind()
            await sink.start()
            self.prometheus = sink
            self.health.add_check("prometheus", sink.readiness_check)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop_thread is not None  # noqa: S101 - only called in thread mode
        return self._loop_thread.run(coro)

    def _enter_starting(self) -> None:
        if self._set_global:
            install_global(self.meter_provider)
        self.state = RuntimeState.STARTING

    def _enter_running(self) -> None:
        self.state = RuntimeState.RUNNING
        log_event(
            _log,
            logging.INFO,
            "started",
            service=self.config.service.name,
            exporter=self.config.exporter.kind,
            address=self.address,
            config_digest=self.config.digest,
        )


def start(config: Config, *, set_global: bool = True) -> Runtime:
    """
    Build the MeterProvider and start the configured sinks on a private loop thread.

    Args:
        config: From :func:`ron_metrics.load_config`.
        set_global: Install the provider as the OpenTelemetry global (once per
            process); ``False`` lets several runtimes coexist, e.g. in tests.

    Raises:
        LifecycleError: If the global provider was already installed.
        ExposerError: If the exposer cannot bind or serve.
        ConfigError: If TLS material is unsafe or views cannot be built.
    """
    runtime = Runtime(config, set_global=set_global)
    runtime._enter_starting()
    runtime._loop_thread = LoopThread()
    try:
        runtime._run(runtime._start_sinks())
    except BaseException:
        runtime.shutdown(timeout=2.0)
        raise
    runtime._enter_running()
    return runtime


async def start_async(config: Config, *, set_global: bool = True) -> Runtime:
    """
    Like :func:`start`, but the sinks run on the caller's running asyncio loop.

    Stop it with ``await runtime.shutdown_async()``.
    """
    runtime = Runtime(config, set_global=set_global)
    runtime._enter_starting()
    runtime._host_loop = asyncio.get_running_loop()
    try:
        await runtime._start_sinks()
    except BaseException:
        await runtime.shutdown_async(timeout=2.0)
        raise
    runtime._enter_running()
    return runtime
