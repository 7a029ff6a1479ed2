"""
The runtime: builds the provider once, runs the sinks, owns lifecycle and readiness.

States: CREATED → STARTING → RUNNING → STOPPING → STOPPED. Shutdown order (one
deadline shared by all steps): readiness goes 503 (``draining``), the exposer stops
accepting and drains, the OTLP sink flushes once more, the provider shuts down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry.metrics import Meter, NoOpMeter
from opentelemetry.sdk.metrics import MeterProvider

from ron_metrics._loop import LoopThread
from ron_metrics.bus import Bus, ConfigUpdated, Draining, ExporterSwitched
from ron_metrics.config import Config, OtlpConfig, PrometheusConfig
from ron_metrics.config.diff import changed_keys, refuse_restart_keys
from ron_metrics.errors import ConfigError, ExporterError, LifecycleError
from ron_metrics.exporters.otlp import OtlpSink
from ron_metrics.exporters.prometheus.server import PrometheusSink
from ron_metrics.families import SelfMetrics
from ron_metrics.health import HealthRegistry, HealthSnapshot
from ron_metrics.logs import log_event
from ron_metrics.provider import build_provider, check_global_free, install_global

__all__ = ["Runtime", "RuntimeState", "start", "start_async"]

_log = logging.getLogger("ron_metrics.runtime")
SUPERVISE_INTERVAL = 0.05
RESTART_BACKOFF_BASE = 0.1
RESTART_BACKOFF_CAP = 5.0
RESTART_WINDOW = 60.0
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
        self.otlp: OtlpSink | None = None
        self.bus = Bus(on_lag=self.self_metrics.bus_lagged.add)
        self._switch_lock = asyncio.Lock()
        self.health.set("config", ok=True)
        self.health.add_check(
            "draining", lambda: "shutting down" if self._draining else None
        )
        self.health.add_check("otlp-thread", self._otlp_thread_check)
        self._supervisor: asyncio.Task[None] | None = None
        self._restarts: dict[str, list[float]] = {"prometheus": [], "otlp": []}

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

        With ``sdk.disabled`` it is a no-op meter.
        """
        self._check_process()
        if self.config.sdk.disabled:
            return NoOpMeter(name, version)
        return self.meter_provider.get_meter(name, version)

    def call_in_loop(self, fn: Callable[[], object]) -> None:
        """
        Run ``fn`` soon on the loop that runs the sinks (thread-safe).
        """
        loop = (
            self._loop_thread.loop if self._loop_thread is not None else self._host_loop
        )
        if loop is None:
            raise LifecycleError("this runtime has no running loop")
        loop.call_soon_threadsafe(fn)

    def readiness(self) -> HealthSnapshot:
        """
        The current readiness verdict.
        """
        return self.health.snapshot()

    def shutdown(self, timeout: float = 5.0) -> None:
        """
        Stop everything within ``timeout`` seconds; safe to call more than once.

        Callable from any thread. A runtime started with :func:`start_async` is
        stopped on its host loop; on that loop itself use :meth:`shutdown_async`
        (checked before anything changes).
        """
        if self._loop_thread is None and self._host_loop is not None:
            if _running_loop() is self._host_loop:
                raise LifecycleError(
                    "shutdown() blocks, and this is the runtime's own event loop; use"
                    " 'await runtime.shutdown_async()' here"
                )
            asyncio.run_coroutine_threadsafe(
                self.shutdown_async(timeout), self._host_loop
            ).result(timeout + 1)
            return
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        try:
            if self._loop_thread is not None:
                self._loop_thread.run(self._stop_sinks(deadline), timeout=timeout + 1)
                self._loop_thread.close(max(0.1, deadline - time.monotonic()))
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
        self.bus.publish(Draining())
        log_event(_log, logging.INFO, "stopping")
        return True

    def _finish_stop(self, deadline: float) -> None:
        remaining_ms = max(100.0, (deadline - time.monotonic()) * 1000)
        try:
            self.meter_provider.shutdown(timeout_millis=remaining_ms)
        finally:
            self.state = RuntimeState.STOPPED
            log_event(_log, logging.INFO, "stopped")

    def _otlp_thread_check(self) -> str | None:
        if self.otlp is None or self._draining or self.otlp.alive():
            return None
        return "export thread down"

    # -- supervision --------------------------------------------------------------

    def _backoff(self, name: str) -> float:
        # Capped exponential backoff over the restarts of the last minute.
        now = time.monotonic()
        recent = [t for t in self._restarts[name] if now - t < RESTART_WINDOW]
        recent.append(now)
        self._restarts[name] = recent
        return float(
            min(RESTART_BACKOFF_CAP, RESTART_BACKOFF_BASE * 2 ** (len(recent) - 1))
        )

    async def _supervise(self) -> None:
        while not self._draining:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            async with self._switch_lock:
                for name, sink in (
                    ("prometheus", self.prometheus),
                    ("otlp", self.otlp),
                ):
                    if sink is None or sink.alive() or self._draining:
                        continue
                    delay = self._backoff(name)
                    self.self_metrics.service_restarts.add(1, {"service": name})
                    log_event(
                        _log,
                        logging.ERROR,
                        "sink_died",
                        service=name,
                        restart_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    if self.state is not RuntimeState.RUNNING:
                        return
                    try:
                        if isinstance(sink, PrometheusSink):
                            await sink.restart()
                        else:
                            sink.restart()
                    except Exception as exc:
                        log_event(
                            _log,
                            logging.ERROR,
                            "sink_restart_failed",
                            service=name,
                            error=repr(exc),
                        )
                    else:
                        log_event(_log, logging.INFO, "sink_restarted", service=name)

    async def _stop_sinks(self, deadline: float) -> None:
        if self.prometheus is not None and self.prometheus.config.drain_delay > 0:
            # Keep serving a 503 /readyz for a moment, so orchestrators and load
            # balancers see "not ready" before the listener goes away.
            delay = self.prometheus.config.drain_delay
            await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic() - 0.5)))
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        if self.prometheus is not None:
            await self.prometheus.stop(max(0.1, deadline - time.monotonic()))
        if self.otlp is not None:
            # The final flush: increments made up to now reach the collector.
            await asyncio.to_thread(
                self.otlp.stop, max(0.1, deadline - time.monotonic())
            )

    def _new_prometheus(self, config: PrometheusConfig) -> PrometheusSink:
        return PrometheusSink(
            config,
            service=self.config.service.name,
            hub=self.hub,
            self_metrics=self.self_metrics,
            readiness=self.health.snapshot,
        )

    def _new_otlp(self, config: OtlpConfig, health_name: str = "otlp") -> OtlpSink:
        return OtlpSink(
            config,
            hub=self.hub,
            self_metrics=self.self_metrics,
            health=self.health,
            health_name=health_name,
        )

    async def _start_prometheus(self, config: PrometheusConfig) -> PrometheusSink:
        sink = self._new_prometheus(config)
        sink.bind()
        await sink.start()
        return sink

    def _adopt_prometheus(self, sink: PrometheusSink | None) -> None:
        self.prometheus = sink
        if sink is None:
            self.health.remove("prometheus")
        else:
            self.health.add_check("prometheus", sink.readiness_check)

    async def _start_sinks(self) -> None:
        exporter = self.config.exporter
        if exporter.prometheus_enabled:
            self._adopt_prometheus(await self._start_prometheus(exporter.prometheus))
        if exporter.otlp_enabled:
            self.otlp = self._new_otlp(exporter.otlp)
            self.otlp.start()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="ron-metrics-supervisor"
        )

    # -- reload -------------------------------------------------------------------

    def reload(self, new_config: Config, timeout: float = 10.0) -> tuple[str, ...]:
        """
        Apply ``new_config`` live; exporter changes are make-before-break behind readiness.

        Callable from any thread, whichever way the runtime was started: the work hops
        to the loop that runs the sinks. Only that loop's own thread must use
        :meth:`reload_async` instead (blocking there would wait on itself).

        Readiness reports ``switching`` while sinks change. A new sink must prove itself
        within ``timeout`` (serving, or one successful export) before the old one stops;
        otherwise the new one is torn down, the old one keeps running, and the reload
        fails. Keys fixed at provider build (``service``, ``labels``, ``cardinality``,
        ``exporter.prometheus.target_info``/``scope_labels``) need a restart.

        Returns:
            The changed key paths (empty when nothing changed).

        Raises:
            ConfigError: If a changed key needs a restart; nothing was changed.
            ExporterError: If the new sink could not prove itself; the old one still runs.
            LifecycleError: If the runtime is not running, or this is its loop's thread.
        """
        self._check_process()
        if self.state is not RuntimeState.RUNNING:
            raise LifecycleError(f"cannot reload a runtime that is {self.state.value}")
        loop = self._sink_loop()
        if _running_loop() is loop:
            raise LifecycleError(
                "reload() blocks, and this is the runtime's own event loop; use"
                " 'await runtime.reload_async(config)' here"
            )
        future = asyncio.run_coroutine_threadsafe(
            self._reload(new_config, timeout), loop
        )
        return future.result()

    async def reload_async(
        self, new_config: Config, timeout: float = 10.0
    ) -> tuple[str, ...]:
        """
        Async twin of :meth:`reload`, usable from any event loop.
        """
        self._check_process()
        loop = self._sink_loop()
        if asyncio.get_running_loop() is loop:
            return await self._reload(new_config, timeout)
        future = asyncio.run_coroutine_threadsafe(
            self._reload(new_config, timeout), loop
        )
        return await asyncio.wrap_future(future)

    def _sink_loop(self) -> asyncio.AbstractEventLoop:
        loop = (
            self._loop_thread.loop if self._loop_thread is not None else self._host_loop
        )
        if loop is None:
            raise LifecycleError("this runtime has no running loop")
        return loop

    async def _reload(self, new_config: Config, timeout: float) -> tuple[str, ...]:
        async with self._switch_lock:
            if self.state is not RuntimeState.RUNNING:
                raise LifecycleError(
                    f"cannot reload a runtime that is {self.state.value}"
                )
            old = self.config
            changed = changed_keys(old, new_config)
            if not changed:
                return ()
            try:
                refuse_restart_keys(changed)
                self.health.set("switching", ok=False, detail="switching")
                try:
                    await self._switch(old, new_config, time.monotonic() + timeout)
                finally:
                    self.health.remove("switching")
            except (ConfigError, ExporterError) as exc:
                self.self_metrics.reload_failures.add(1)
                log_event(
                    _log,
                    logging.ERROR,
                    "reload_failed",
                    changed=list(changed),
                    error=str(exc),
                )
                raise
            self.config = new_config
            self.bus.publish(ConfigUpdated(old.digest, new_config.digest, changed))
            if old.exporter.kind != new_config.exporter.kind:
                self.bus.publish(
                    ExporterSwitched(old.exporter.kind, new_config.exporter.kind)
                )
            log_event(
                _log,
                logging.INFO,
                "reloaded",
                changed=list(changed),
                old_digest=old.digest,
                new_digest=new_config.digest,
                address=self.address,
            )
            return changed

    async def _switch(self, old: Config, new: Config, deadline: float) -> None:
        old_exp, new_exp = old.exporter, new.exporter
        replace_prometheus = new_exp.prometheus_enabled and (
            self.prometheus is None or old_exp.prometheus != new_exp.prometheus
        )
        replace_otlp = new_exp.otlp_enabled and (
            self.otlp is None or old_exp.otlp != new_exp.otlp
        )
        old_prometheus, old_otlp = self.prometheus, self.otlp
        new_prometheus: PrometheusSink | None = None
        new_otlp: OtlpSink | None = None
        try:
            if replace_prometheus:
                new_prometheus = await self._make_prometheus(
                    old_exp.prometheus, new_exp.prometheus, deadline
                )
            if replace_otlp:
                new_otlp = await self._make_otlp(new_exp.otlp, deadline)
        except BaseException:
            if new_prometheus is not None:
                await new_prometheus.stop(1.0)
            if self.prometheus is None and old_prometheus is not None:
                # Break-before-make was needed (same address); bring the old one back.
                self._adopt_prometheus(await self._start_prometheus(old_exp.prometheus))
            raise
        # The new sinks proved themselves: retire what the new config no longer wants.
        if new_prometheus is not None or not new_exp.prometheus_enabled:
            if old_prometheus is not None and old_prometheus is self.prometheus:
                await old_prometheus.stop(max(0.1, deadline - time.monotonic()))
            self._adopt_prometheus(new_prometheus)
        if new_otlp is not None or not new_exp.otlp_enabled:
            self.otlp = new_otlp
            if old_otlp is not None:
                await asyncio.to_thread(
                    old_otlp.stop, max(0.1, deadline - time.monotonic())
                )

    async def _make_prometheus(
        self, old: PrometheusConfig, new: PrometheusConfig, deadline: float
    ) -> PrometheusSink:
        same_address = (
            self.prometheus is not None
            and old.bind == new.bind
            and (new.bind.is_unix or new.bind.port != 0)
        )
        if same_address and self.prometheus is not None:
            # One address cannot be bound twice: stop the old exposer first (readiness
            # already says "switching"); _switch restarts it if the new one fails.
            await self.prometheus.stop(max(0.1, deadline - time.monotonic()))
            self._adopt_prometheus(None)
        sink = self._new_prometheus(new)
        try:
            sink.bind()
            await asyncio.wait_for(sink.start(), max(0.1, deadline - time.monotonic()))
        except BaseException as exc:
            await sink.stop(1.0)
            raise ExporterError(
                f"the new Prometheus exposer did not start: {exc}"
            ) from exc
        return sink

    async def _make_otlp(self, config: OtlpConfig, deadline: float) -> OtlpSink:
        # The candidate reports under its own health name until it is adopted, so
        # its failures never touch the running sink's state.
        sink = self._new_otlp(config, health_name="otlp-candidate")
        sink.start()
        remaining = max(0.1, deadline - time.monotonic())
        if not await asyncio.to_thread(sink.proven, remaining):
            await asyncio.to_thread(sink.stop, 1.0, flush=False)
            raise ExporterError(
                f"the new OTLP sink made no successful export to {config.resolved_endpoint}"
                " before the deadline"
            )
        if self.otlp is not None:
            self.otlp.rename_health("otlp-retiring")
        sink.rename_health("otlp")
        return sink

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop_thread is None:
            raise LifecycleError("this runtime has no loop thread")
        return self._loop_thread.run(coro)

    def _enter_starting(self) -> None:
        # Refuse before anything starts; install only once the sinks run, so a
        # failed start leaves no global provider behind and a retry works.
        if self._set_global:
            check_global_free()
        self.state = RuntimeState.STARTING

    def _enter_running(self) -> None:
        if self._set_global:
            install_global(self.meter_provider)
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
    runtime._enter_starting()
    runtime._loop_thread = LoopThread()
    try:
        runtime._run(runtime._start_sinks())
        runtime._enter_running()
    except BaseException:
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
    runtime._enter_starting()
    runtime._host_loop = asyncio.get_running_loop()
    try:
        await runtime._start_sinks()
        runtime._enter_running()
    except BaseException:
        await runtime.shutdown_async(timeout=2.0)
        raise
    return runtime
