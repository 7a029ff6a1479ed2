"""
Ports for servers that must be told their port before they start.

Where a server can bind port 0 and report its address (our own runtime) or take a
socket we bound (uvicorn ``--fd``, gunicorn ``fd://``), tests do that. A few cannot:
the fixed port several pre-fork workers take over from each other, a collector
restarted on the same port, a Prometheus server. Those get a port from here.

Binding port 0 and closing the socket does not reserve anything: the kernel hands
the same ephemeral port to the next ``bind(0)`` or outgoing connection, so two
servers (or a server and a client) can end up on one port. The ports given out here
come from *outside* the kernel's ephemeral range, so neither ``bind(0)`` nor an
outgoing connection is ever given one of them; each is given out once per session
and held by a lock file, so test runs side by side do not share one either.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path

_LOCKS = Path(tempfile.gettempdir()) / f"ron-metrics-test-ports-{os.getuid()}"
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
    _LOCKS.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(_LOCKS / str(port), os.O_WRONLY | os.O_CREAT, 0o600)
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
    A loopback port no other server of this run, no ``bind(0)`` and no outgoing
    connection will be given while this process lives.
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


def bound_socket() -> socket.socket:
    """
    A listening loopback socket on a kernel-chosen port, to hand to a server by fd.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
