"""
The runtime: builds the provider once, owns the state machine and the sinks' loop.

States: CREATED → STARTING → RUNNING → STOPPING → STOPPED. Shutdown order (one
deadline shared by all steps): readiness goes 503 (``draining``), the exposer stops
accepting and drains, the OTLP sink flushes once more, the provider shuts down.
What happens on the loop (sinks, supervision, reloads) lives in :mod:`._engine`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import threading
import time

from opentelemetry.metrics import Meter, NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider

from ron_metrics._child import follow_into_children
from ron_metrics._engine import SinkEngine
from ron_metrics._exit import forget_at_exit, stop_at_exit
from ron_metrics._loop import LoopThread
from ron_metrics._wiring import build_engine, observe_readiness
from ron_metrics.bus import Bus, Draining, Subscription
from ron_metrics.config.model import Config
from ron_metrics.errors import LifecycleError
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.logs import log_event
from ron_metrics.provider import (
    build_provider,
    check_global_free,
    install_global,
    shut_down,
)

__all__ = ["Runtime", "RuntimeState", "start", "start_async"]

_log = logging.getLogger("ron_metrics.runtime")


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
    A running ron-metrics instance, from :func:`start` or :func:`start_async`. Use as a
    context manager, or call :meth:`shutdown` (idempotent); one still running at
    interpreter exit is shut down then (not at ``SIGKILL`` or ``os._exit()``).
    """

    def __init__(self, config: Config, *, set_global: bool) -> None:
        self._pid = os.getpid()
        self._set_global = set_global
        self._lock = threading.Lock()
        self._state = RuntimeState.CREATED
        self._health = HealthRegistry()
        built = self._built = build_provider(config)
        self._provider: MeterProvider = built.provider
        self._hub = built.hub
        self._bus = Bus(on_lag=built.self_metrics.bus_lagged.add)
        self._engine = build_engine(config, built, health=self._health, bus=self._bus)
        observe_readiness(
            built, self._health, prefix=config.service.self_metrics_prefix
        )
        self._loop_thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health.set("config", ok=True)

    @property
    def config(self) -> Config:
        """The configuration in effect (the last successful reload's)."""
        return self._engine.config

    @property
    def state(self) -> RuntimeState:
        """Where the runtime is in its life."""
        return self._state

    @property
    def address(self) -> str | None:
        """The exposer's real address (port 0 resolved), or ``None`` without one."""
        return self._engine.address()

    @property
    def meter_provider(self) -> MeterProvider:
        """This runtime's SDK MeterProvider (e.g. for an instrumentation's ``meter_provider=``)."""
        return self._provider

    @property
    def health(self) -> HealthRegistry:
        """The readiness registry: add your own checks; ``/readyz`` ANDs them all."""
        return self._health

    def get_meter(self, name: str, version: str | None = None) -> Meter:
        """A meter from this runtime's provider (a no-op meter with ``sdk.disabled``)."""
        _check_process(self._pid)
        if self.config.sdk.disabled:
            return NoOpMeter(name, version)
        return self._provider.get_meter(name, version)

    def readiness(self) -> HealthSnapshot:
        """The current readiness verdict."""
        return self._health.snapshot()

    def subscribe(self, capacity: int = 64) -> Subscription:
        """Lifecycle events (``ConfigUpdated``, ``ExporterSwitched``, ``Draining``); bounded."""
        return self._bus.subscribe(capacity)

    def shutdown(self, timeout: float = 5.0) -> None:
        """
        Stop everything within ``timeout`` seconds; safe to call more than once, from
        any thread — except the loop a :func:`start_async` runtime runs on, which must
        use :meth:`shutdown_async` (refused before anything changes).
        """
        if self._loop_thread is None and self._loop is not None:
            self._refuse_own_loop("shutdown() blocks", "await runtime.shutdown_async()")
            asyncio.run_coroutine_threadsafe(
                self.shutdown_async(timeout), self._loop
            ).result(timeout + 1)
            return
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        try:
            if self._loop_thread is not None:
                self._loop_thread.run(self._engine.stop(deadline), timeout=timeout + 1)
                self._loop_thread.close(max(0.1, deadline - time.monotonic()))
        finally:
            self._finish_stop(deadline)

    async def shutdown_async(self, timeout: float = 5.0) -> None:
        """Async twin of :meth:`shutdown`, usable from any event loop."""
        if (
            self._loop_thread is not None
            or asyncio.get_running_loop() is not self._loop
        ):
            await asyncio.to_thread(self.shutdown, timeout)
            return
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        try:
            await self._engine.stop(deadline)
        finally:
            await asyncio.to_thread(self._finish_stop, deadline)

    def reload(self, new_config: Config, timeout: float = 10.0) -> tuple[str, ...]:
        """
        Apply ``new_config`` live, make-before-break behind readiness (``switching``).

        From any thread; on the sinks' own loop use :meth:`reload_async`. A new sink
        must prove itself within ``timeout`` (serving, or one successful export)
        before the old one stops, else it is torn down and the old one keeps
        running. A Prometheus change on the same address serves the same bound
        socket. Keys the provider read at build (``service``, ``labels``,
        ``cardinality``, ``sdk``, ``multiprocess``, ``target_info``,
        ``scope_labels``) need a restart. Returns the changed key paths.

        Raises:
            ConfigError: A changed key needs a restart (nothing changed), or a new
                sink's settings are unusable.
            ExporterError: The new sink did not prove itself; the old one still runs.
            LifecycleError: Not running, or called on the sinks' own loop.
        """
        loop = self._running_loop_for("reload")
        self._refuse_own_loop("reload() blocks", "await runtime.reload_async(config)")
        coro = self._engine.reload(new_config, timeout)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def reload_async(
        self, new_config: Config, timeout: float = 10.0
    ) -> tuple[str, ...]:
        """Async twin of :meth:`reload`, usable from any event loop."""
        loop = self._running_loop_for("reload")
        if asyncio.get_running_loop() is loop:
            return await self._engine.reload(new_config, timeout)
        coro = self._engine.reload(new_config, timeout)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _running_loop_for(self, what: str) -> asyncio.AbstractEventLoop:
        _check_process(self._pid)
        if self._state is not RuntimeState.RUNNING or self._loop is None:
            raise LifecycleError(f"cannot {what} a runtime that is {self._state.value}")
        return self._loop

    def _refuse_own_loop(self, why: str, instead: str) -> None:
        if self._loop is not None and _running_loop() is self._loop:
            raise LifecycleError(
                f"{why}, and this is the runtime's own loop; use '{instead}'"
            )

    def _begin_stop(self) -> bool:
        with self._lock:
            if self._state in {RuntimeState.STOPPING, RuntimeState.STOPPED}:
                return False
            _check_process(self._pid)
            self._state = RuntimeState.STOPPING
        self._health.add_check("draining", lambda: "shutting down")
        self._bus.publish(Draining())
        log_event(_log, logging.INFO, "stopping")
        return True

    def _finish_stop(self, deadline: float) -> None:
        forget_at_exit(self)
        try:
            remaining_ms = max(100.0, (deadline - time.monotonic()) * 1000)
            shut_down(self._built, remaining_ms)
        finally:
            self._state = RuntimeState.STOPPED
            log_event(_log, logging.INFO, "stopped")

    def _reset_in_child(self, engine: SinkEngine) -> None:
        self._engine.forget_health()
        self._pid, self._lock, self._engine = os.getpid(), threading.Lock(), engine
        self._state, self._loop_thread, self._loop = RuntimeState.CREATED, None, None

    async def _start(
        self, loop_thread: LoopThread | None, install: bool = True
    ) -> None:
        # Refuse before anything starts; install only once the sinks run, so a
        # failed start leaves no global provider behind and a retry works.
        install = install and self._set_global
        if install:
            check_global_free()
        self._state = RuntimeState.STARTING
        self._loop_thread = loop_thread
        self._loop = asyncio.get_running_loop()
        await self._engine.start(time.monotonic() + 30.0)
        if install:
            install_global(self._provider)
        follow_into_children(self)
        self._state = RuntimeState.RUNNING
        stop_at_exit(self)
        config = self.config
        log_event(_log, logging.INFO, "started", service=config.service.name,
                  exporter=config.exporter.kind, address=self.address,
                  config_digest=config.digest)  # fmt: skip


def _check_process(pid: int) -> None:
    if os.getpid() != pid:
        raise LifecycleError(
            "this Runtime was created in another process (inherited across fork);"
            " call ron_metrics.start() in the child, e.g. in the post-fork hook"
        )


def _honour_disabled(config: Config, set_global: bool) -> tuple[Config, bool]:
    # OTEL_SDK_DISABLED / sdk.disabled: a runtime that exports nothing, installs
    # nothing, and hands out no-op meters — said once, in the log.
    if not config.sdk.disabled:
        return config, set_global
    log_event(
        _log,
        logging.WARNING,
        "sdk_disabled",
        why="sdk.disabled (OTEL_SDK_DISABLED) is true: no exporter runs, no global"
        " MeterProvider is installed, meters are no-ops",
    )
    exporter = dataclasses.replace(config.exporter, kind="none")
    return dataclasses.replace(config, exporter=exporter), False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
    config, set_global = _honour_disabled(config, set_global)
    runtime = Runtime(config, set_global=set_global)
    loop_thread = LoopThread()
    try:
        loop_thread.run(runtime._start(loop_thread))
    except BaseException:
        if runtime._loop is None:  # refused before starting: nothing to stop
            loop_thread.close()
            shut_down(runtime._built, 2000)
        else:
            runtime.shutdown(timeout=2.0)
        raise
    return runtime


async def start_async(config: Config, *, set_global: bool = True) -> Runtime:
    """
    Like :func:`start`, but the sinks run on the caller's running asyncio loop.

    Stop it with ``await runtime.shutdown_async()``.
    """
    config, set_global = _honour_disabled(config, set_global)
    runtime = Runtime(config, set_global=set_global)
    try:
        await runtime._start(None)
    except BaseException:
        if runtime._loop is None:
            shut_down(runtime._built, 2000)
        else:
            await runtime.shutdown_async(timeout=2.0)
        raise
    return runtime
