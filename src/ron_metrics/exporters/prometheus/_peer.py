"""
What the kernel says of a connection's peer: who it is, and whether it is gone.
"""

from __future__ import annotations

import asyncio
import os
import socket

__all__ = ["fileno_of", "peer_finished", "peer_of", "socket_closed"]


def peer_of(writer: asyncio.StreamWriter) -> str:
    """
    ``HOST:PORT`` of the client, or ``unix`` for a Unix-socket peer.
    """
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return "unix"


def fileno_of(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def socket_closed(fd: int) -> bool:
    # The peer's FIN is visible to a non-blocking peek once its data was read.
    with socket.socket(fileno=os.dup(fd)) as peek:
        try:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


# Linux TCP states (include/net/tcp_states.h): the peer's FIN moves a socket we
# have not closed to CLOSE_WAIT; a reset before we looked leaves it CLOSE.
_TCP_CLOSE = 7
_TCP_CLOSE_WAIT = 8


def peer_finished(fd: int) -> bool:
    """
    True if the peer has already closed its side (FIN or reset received).

    Unlike a peek, this sees a FIN queued behind unread request bytes: a client
    that sent its request and closed is known as gone before anything is read.
    Where the kernel does not report TCP state, the answer is False.
    """
    if not hasattr(socket, "TCP_INFO"):
        return False
    with socket.socket(fileno=os.dup(fd)) as probe:
        try:
            state = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        except OSError:
            return False
    return state[0] in (_TCP_CLOSE, _TCP_CLOSE_WAIT)
