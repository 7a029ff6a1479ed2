"""
A running runtime follows the process into a forked child.

``gunicorn --preload`` (and any ``fork()`` after :func:`ron_metrics.start`) gives
every worker a copy of the parent's runtime whose threads do not exist. In the
child, right after ``fork()`` returns, the runtime re-initialises itself:

1. the parent's descriptors are closed in the child (its loop's connections and
   listening sockets, the group lease) — the parent keeps serving with its own;
2. in a ``[multiprocess]`` group the child joins as a member of its own (a new
   store file) before any measurement can be lost;
3. the sinks start again in the child, on a new loop thread, with the child's own
   ``service.instance.id``. Outside a group the child runs no Prometheus exposer
   (the parent's port is the parent's): that is logged once per child, pointing at
   ``[multiprocess]``. An OTLP sink exports per process.

The provider, the OTel global and every instrument the app holds stay as they are;
the parent's measurements before the fork stay the parent's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from typing import Any

from ron_metrics._loop import LoopThread
from ron_metrics._wiring import build_engine
from ron_metrics.config.model import Config
from ron_metrics.exporters.prometheus.listener import close_inherited_listeners
from ron_metrics.logs import log_event
from ron_metrics.multiprocess.aggregation import CURRENT

__all__ = ["follow_into_children"]

_log = logging.getLogger("ron_metrics.runtime")
# Loops abandoned by forks: kept referenced so their socket objects never close
# (a second time) descriptor numbers the child has reused.
_ABANDONED: list[LoopThread] = []
_EXPORTERS_WITHOUT_PROMETHEUS = {"prometheus": "none", "both": "otlp"}


def child_config(config: Config, *, in_group: bool) -> Config:
    """
    The config a forked child runs: no own exposer outside a group.
    """
    kind = config.exporter.kind
    if in_group or kind not in _EXPORTERS_WITHOUT_PROMETHEUS:
        return config
    log_event(
        _log,
        logging.WARNING,
        "prometheus_in_forked_child",
        why="a forked worker cannot serve the parent's Prometheus port; set"
        " [multiprocess] dir so all workers share one port with the group's totals",
    )
    exporter = dataclasses.replace(
        config.exporter, kind=_EXPORTERS_WITHOUT_PROMETHEUS[kind]
    )
    return dataclasses.replace(config, exporter=exporter)


def follow_into_children(runtime: Any) -> None:
    """
    Re-initialise ``runtime`` in every forked child while it exists and runs.
    """
    ref = weakref.ref(runtime)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None and alive.state.value == "running":
            restart_in_child(alive)

    os.register_at_fork(after_in_child=after_in_child)


def restart_in_child(runtime: Any) -> None:
    """
    Give ``runtime`` (a :class:`~ron_metrics.Runtime`, typed loosely: this module
    sits below it) sinks of its own in this child.
    """
    # First: no measurement of this child may land in the parent's store.
    CURRENT.store = None
    close_inherited_listeners()
    if runtime._loop_thread is not None:
        runtime._loop_thread.abandon_in_child()
        _ABANDONED.append(runtime._loop_thread)
    built = runtime._built
    if built.group is not None:
        built.group.forget_inherited()
        CURRENT.store = built.group.join()
    config = child_config(runtime.config, in_group=built.group is not None)
    runtime._reset_in_child(
        build_engine(config, built, health=runtime.health, bus=runtime._bus)
    )
    loop_thread = LoopThread()
    try:
        loop_thread.run(runtime._start(loop_thread, install=False))
    except Exception as exc:
        log_event(_log, logging.ERROR, "child_start_failed", error=repr(exc))
