"""
Helpers for testing your own instrumentation with ron-metrics.

Example::

    from ron_metrics.testing import runtime_for_tests, sample_value

    with runtime_for_tests() as runtime:
        counter = runtime.get_meter("app").create_counter("jobs")
        counter.add(3, {"queue": "default"})
        assert sample_value(runtime, "jobs_total", queue="default") == 3

The runtime has no exporter (``kind = "none"``) and does not touch the OTel
global, so tests can create as many as they like.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ron_metrics.config import Config, load_config
from ron_metrics.runtime import Runtime, start

__all__ = [
    "config_for_tests",
    "reserved_port",
    "runtime_for_tests",
    "sample_value",
    "samples",
]


def config_for_tests(**sections: Mapping[str, Any]) -> Config:
    """
    A config built from ``sections`` only (the environment is ignored).

    ``service.name`` defaults to ``"test"`` and ``exporter.kind`` to ``"none"``.
    """
    overrides: dict[str, Any] = dict(sections)
    overrides["service"] = {"name": "test", **dict(sections.get("service", {}))}
    overrides["exporter"] = {"kind": "none", **dict(sections.get("exporter", {}))}
    return load_config(None, env={}, **overrides)


@contextmanager
def runtime_for_tests(config: Config | None = None) -> Iterator[Runtime]:
    """
    Start a runtime without touching the OTel global, and shut it down afterwards.
    """
    runtime = start(config or config_for_tests(), set_global=False)
    try:
        yield runtime
    finally:
        runtime.shutdown()


def samples(runtime: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    Collect once and return every Prometheus sample as ``{(name, labels): value}``.
    """
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in runtime._hub.scrape():
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def sample_value(runtime: Runtime, name: str, **labels: str) -> float | None:
    """
    The value of the one sample ``name`` whose labels include ``labels``; ``None`` if absent.

    Raises:
        LookupError: If several samples match.
    """
    wanted = set(labels.items())
    found = [
        value
        for (sample_name, sample_labels), value in samples(runtime).items()
        if sample_name == name and wanted <= sample_labels
    ]
    if len(found) > 1:
        raise LookupError(f"{len(found)} samples named {name!r} match {labels!r}")
    return found[0] if found else None


# Ports for servers a test must tell their port before they start (a pre-fork
# group's shared port, a collector restarted on the same port). Binding port 0 and
# closing the socket reserves nothing: the kernel hands the same ephemeral port to
# the next bind(0) or outgoing connection, so two servers can end up on one port.
# These come from outside the kernel's ephemeral range (never given to bind(0) or
# an outgoing connection), once per process, each held by a lock file so test
# runs side by side never share one. Where a server can bind port 0 and report
# its address, let it: that needs no reservation at all.

_held: list[int] = []  # lock descriptors, held until this process exits
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidates() -> range:
    low, high = _ephemeral_range()
    if low - 10_000 >= 1024:
        return range(low - 10_000, low)
    return range(high + 1, 65536)


def _bindable(port: int) -> bool:
    # As the servers bind: SO_REUSEADDR on, so a port in TIME_WAIT counts as free.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _lock(port: int) -> bool:
    locks = Path(tempfile.gettempdir()) / f"ron-metrics-test-ports-{os.getuid()}"
    locks.mkdir(mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(locks / str(port), flags, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def reserved_port() -> int:
    """
    A loopback port for a server a test must name before it starts: no other
    caller in this process or in a concurrent test run, no ``bind(0)`` and no
    outgoing connection is given it while this process lives.

    Raises:
        RuntimeError: If every port below the ephemeral range is taken.
    """
    ports = _candidates()
    start = (os.getpid() * 7919) % len(ports)
    for step in range(len(ports)):
        port = ports[(start + step) % len(ports)]
        if port in _given or not _lock(port):
            continue
        if _bindable(port):
            _given.add(port)
            return port
        os.close(_held.pop())  # closing drops the lock
    raise RuntimeError("no free port outside the ephemeral range")
