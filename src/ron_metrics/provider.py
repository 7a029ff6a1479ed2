"""
Build the MeterProvider: resource, views, the one hub reader, self-metrics.

This is the only module that touches the OpenTelemetry global
(:func:`install_global`); the OTel API allows setting it once per process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.resources import Resource

from ron_metrics._fork import ForkSafeMeterProvider, hold_across_fork
from ron_metrics._overflow import OverflowAccounting
from ron_metrics.config import Config
from ron_metrics.errors import LifecycleError
from ron_metrics.families import SelfMetrics
from ron_metrics.fast.meter import FastRegistry
from ron_metrics.hub import HubReader
from ron_metrics.logs import log_event
from ron_metrics.multiprocess.aggregation import CURRENT
from ron_metrics.multiprocess.group import Group
from ron_metrics.multiprocess.member_runtime import MemberRuntime, OwnCpu
from ron_metrics.multiprocess.memory_fs import check_amnesia_dir
from ron_metrics.runtime_metrics import RuntimeMetrics
from ron_metrics.views import SELF_METER_NAME, build_views

__all__ = [
    "BuiltProvider",
    "build_provider",
    "build_resource",
    "check_global_free",
    "install_global",
    "join_group",
    "shut_down",
]

AMNESIA_ATTRIBUTE = "ron.amnesia"
_log = logging.getLogger("ron_metrics.exposer")


def default_instance_id() -> str:
    """
    ``HOST-PID``: unique per process, so forked workers never share series.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


_EXEMPLAR_FILTERS: dict[str, Callable[[], ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_on": AlwaysOnExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}


def _child_resource() -> Resource:
    # A forked child is a process of its own: it gets its own instance id.
    return Resource({"service.instance.id": default_instance_id()})


def build_resource(config: Config) -> Resource:
    """
    The resource every series carries: service identity, amnesia flag, allowlisted extras.
    """
    service = config.service
    attributes: dict[str, str | bool] = {
        "service.name": service.name,
        "service.instance.id": service.instance or default_instance_id(),
        AMNESIA_ATTRIBUTE: service.amnesia,
    }
    if service.build_version:
        attributes["service.version"] = service.build_version
    attributes.update(config.labels.extra)
    # Resource(...) rather than Resource.create(): create() reads OTEL_* env vars,
    # and the one loader has already decided what the environment means.
    return Resource(attributes)


@dataclass(frozen=True, slots=True)
class BuiltProvider:
    """
    What :func:`build_provider` returns.
    """

    provider: MeterProvider
    hub: HubReader
    self_metrics: SelfMetrics
    group: Group | None = None
    runtime_metrics: RuntimeMetrics | None = None


def build_provider(config: Config) -> BuiltProvider:
    """
    Build the MeterProvider with one cumulative hub reader and the self-metrics.

    Raises:
        ConfigError: If a view cannot be built.
    """
    # Exemplars travel over OTLP and in the OpenMetrics and protobuf expositions:
    # with the filter off no reservoir is kept.
    exemplars = config.sdk.exemplar_filter != "always_off"
    group = join_group(config)
    views = build_views(config.cardinality, exemplars=exemplars, shared=bool(group))
    prometheus = config.exporter.prometheus
    hub = HubReader(
        target_info=prometheus.target_info,
        scope_labels=prometheus.scope_labels,
    )
    provider = ForkSafeMeterProvider(
        metric_readers=[hub],
        resource=build_resource(config),
        views=views,
        exemplar_filter=_EXEMPLAR_FILTERS[config.sdk.exemplar_filter](),
        shutdown_on_exit=False,
        child_resource=None if config.service.instance else _child_resource,
    )
    if config.sdk.fast_path:
        # In a group the cells write through to the store as the aggregations do.
        hub.fast = provider.fast = fast_registry(
            provider,
            hub,
            views,
            shared=group is not None,
            exemplar_filter=config.sdk.exemplar_filter,
        )
    # No forked child may inherit the collection lock held by a scrape thread.
    hold_across_fork(hub)
    self_metrics = SelfMetrics.create(
        provider.get_meter(SELF_METER_NAME), config.service.self_metrics_prefix
    )
    # Self-metrics need the provider, and the hub is built before it: wire them now.
    hub.overflow = OverflowAccounting(
        SELF_METER_NAME,
        config.service.self_metrics_prefix + "rejected_total",
        lambda grown: self_metrics.rejected.add(grown, {"reason": "cardinality"}),
    )
    hub.on_name_collision = lambda name: _name_collision(self_metrics, name)
    if group is not None:
        group.on_rejected = lambda reason, count: self_metrics.rejected.add(
            count, {"reason": reason}
        )
    return BuiltProvider(
        provider=provider,
        hub=hub,
        self_metrics=self_metrics,
        group=group,
        runtime_metrics=_runtime_metrics(config, provider, group=group),
    )


def _runtime_metrics(
    config: Config, provider: MeterProvider, *, group: Group | None
) -> RuntimeMetrics | None:
    chosen = config.runtime_metrics
    if not chosen.enabled or not chosen.groups:
        return None
    if group is not None:
        # The serving process collects for the group, so its own values cannot
        # stand for the workers': it reads every live member's process values
        # instead. The interpreter's GC figures cannot be read from outside.
        if "process" in chosen.groups:
            group.member_runtime = MemberRuntime()
            group.own_cpu = OwnCpu()
        if off := [name for name in chosen.groups if name != "process"]:
            log_event(
                _log,
                logging.INFO,
                "runtime_metrics_off",
                groups=",".join(off),
                reason="multiprocess: a worker's GC figures cannot be read from"
                " the serving process",
            )
        return None
    found = RuntimeMetrics(provider.get_meter(SELF_METER_NAME), chosen.groups)
    if "gc_pauses" in chosen.groups and not found.timing_pauses:
        log_event(
            _log,
            logging.INFO,
            "gc_pauses_off",
            reason="GC pauses are timed on the fast path only (sdk.fast_path)",
        )
    return found


def fast_registry(
    provider: ForkSafeMeterProvider,
    hub: HubReader,
    views: list[Any],
    *,
    shared: bool = False,
    exemplar_filter: str = "always_off",
) -> FastRegistry:
    """
    The fast path's streams, with the provider's views and the reader's limits.
    """
    storage = provider._measurement_consumer._reader_storages[hub]

    def limit_of(cls: type) -> int:
        limits: dict[type, int] = storage._instrument_class_cardinality_limit
        return limits.get(cls, 2000)

    return FastRegistry(
        views,
        limit_of,
        lambda: provider._sdk_config.resource,
        shared=shared,
        exemplar_filter=exemplar_filter,
    )


def shut_down(built: BuiltProvider, timeout_millis: float) -> None:
    """
    Shut the provider down and leave the group: this process's totals stay in its
    file (counted as an exited member's), its gauges and up-down counters drop out.
    """
    if built.runtime_metrics is not None:
        built.runtime_metrics.close()
    try:
        built.provider.shutdown(timeout_millis=timeout_millis)
    finally:
        if built.group is not None:
            built.group.leave()
            CURRENT.store = None


def join_group(config: Config) -> Group | None:
    """
    Join the ``[multiprocess]`` group (one per process), making its store current.

    Raises:
        LifecycleError: If another runtime of this process already joined one.
        ConfigError: If the directory is unsafe, or on a disk under amnesia.
    """
    if not config.multiprocess.enabled or config.multiprocess.dir is None:
        return None
    if CURRENT.store is not None:
        raise LifecycleError(
            "this process already belongs to a multi-process group (one runtime with"
            " [multiprocess] per process)"
        )
    check_amnesia_dir(config.multiprocess.dir, amnesia=config.service.amnesia)
    group = Group(
        config.multiprocess.dir,
        gauge_policy=config.multiprocess.gauge,
        forget_at_end=config.service.amnesia,
    )
    CURRENT.store = group.join()
    return group


def _name_collision(self_metrics: SelfMetrics, name: str) -> None:
    self_metrics.rejected.add(1, {"reason": "name_collision"})
    log_event(
        _log,
        logging.WARNING,
        "name_collision",
        family=name,
        why="another instrument already exposes this Prometheus name; this one is"
        " left out of /metrics (OTLP still carries it)",
    )


_global_lock = threading.Lock()
_global_owner: list[MeterProvider] = []


def check_global_free() -> None:
    """
    Raise now if the OTel global MeterProvider can no longer be installed.

    Called before anything starts, so a refused start changes nothing.

    Raises:
        LifecycleError: If ron-metrics or anyone else already set the global.
    """
    if _global_owner:
        raise LifecycleError(
            "ron_metrics.start() already installed the global MeterProvider in this"
            " process; the OpenTelemetry API allows it once. Use"
            " start(config, set_global=False) for further runtimes."
        )
    if not isinstance(otel_metrics.get_meter_provider(), _ProxyMeterProvider):
        raise LifecycleError(
            "another MeterProvider was already installed as the OpenTelemetry global;"
            " use start(config, set_global=False) and runtime.meter_provider"
        )


def install_global(provider: MeterProvider) -> None:
    """
    Make ``provider`` the OTel global MeterProvider, once per process.

    Raises:
        LifecycleError: If ron-metrics or anyone else already set the global.
    """
    with _global_lock:
        check_global_free()
        otel_metrics.set_meter_provider(provider)
        if otel_metrics.get_meter_provider() is not provider:
            raise LifecycleError(
                "another MeterProvider was already installed as the OpenTelemetry global;"
                " use start(config, set_global=False) and runtime.meter_provider"
            )
        _global_owner.append(provider)
