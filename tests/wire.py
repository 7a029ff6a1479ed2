"""
Raw-socket helpers for wire-level tests: send exact bytes, read what comes back.
"""

from __future__ import annotations

import socket
import time


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def connect(address: str, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(address)), timeout=timeout)


def read_all(sock: socket.socket, limit: float = 5.0) -> bytes:
    """Read until the peer closes or ``limit`` seconds pass."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def exchange(address: str, payload: bytes, limit: float = 5.0) -> bytes:
    with connect(address) as sock:
        sock.sendall(payload)
        return read_all(sock, limit)


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True if the peer closes (FIN or RST) within ``within`` seconds; data is skipped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def wait_for_response(sock: socket.socket, within: float = 60.0) -> bool:
    """
    True once the first bytes of a response are on ``sock`` (peeked, not read).

    A test that holds a scrape unread uses it to know the body was rendered and is
    being written, however long rendering took on a busy machine.
    """
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            return bool(sock.recv(1, socket.MSG_PEEK))
        except TimeoutError:
            return False
    return False
