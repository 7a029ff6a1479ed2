"""
The exposer's bound socket, shared between the sinks that serve it.

We bind the socket ourselves (so the real address is known, and UDS safety lives
in one place) and never call ``listen()`` on it: each server accepts on a
duplicate, and ``asyncio.start_server`` calls ``listen()``. One bound socket can
therefore be served by two sinks at once — the running one and its replacement
during a reload — so a settings change never rebinds the address: no moment
without a listener, no new port when bound to port 0. The socket is closed (and
a Unix socket file removed) when its last user releases it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import weakref

from ron_metrics.config.values import BindAddress
from ron_metrics.errors import ExposerError
from ron_metrics.logs import log_event
from ron_metrics.safety import SocketIdentity, bind_unix_socket, remove_unix_socket

__all__ = ["Listener", "close_inherited_listeners"]

_log = logging.getLogger("ron_metrics.exposer")
_OPEN: weakref.WeakSet[Listener] = weakref.WeakSet()


def close_inherited_listeners() -> None:
    """
    In a forked child: close every listening socket inherited from the parent.

    A child holding a copy keeps the socket listening after the parent exits, with
    nobody accepting — and keeps the address from being bound again.
    """
    for listener in list(_OPEN):
        listener.close_inherited()


def _bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only (never SO_REUSEPORT): a second process configured with
        # the same port must fail loudly, not silently take half the scrapes.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ExposerError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    return sock


class Listener:
    """
    A bound (not yet listening) socket with a count of the sinks using it.
    """

    def __init__(
        self, sock: socket.socket, bind: BindAddress, identity: SocketIdentity | None
    ) -> None:
        self._sock: socket.socket | None = sock
        self.bind_address = bind
        self._identity = identity
        self._users = 1
        self._duplicates: list[socket.socket] = []
        _OPEN.add(self)

    @classmethod
    def open(cls, bind: BindAddress) -> Listener:
        """
        Bind ``bind`` safely (a private directory and 0600 file for a Unix socket).

        Raises:
            ExposerError: If the address cannot be bound safely.
        """
        if bind.path is not None:
            sock, identity = bind_unix_socket(bind.path)
            return cls(sock, bind, identity)
        sock = _bind_tcp(bind.host or "127.0.0.1", bind.port or 0)
        if not bind.is_loopback:
            log_event(_log, logging.WARNING, "public_bind", address=str(bind))
        return cls(sock, bind, None)

    def share(self) -> Listener:
        """
        Count one more user (a replacement sink) and return this listener.
        """
        if self._sock is None:
            raise ExposerError("the listener is closed")
        self._users += 1
        return self

    def release(self) -> None:
        """
        One user is done; the last one closes the socket and removes its file.
        """
        self._users -= 1
        if self._users > 0 or self._sock is None:
            return
        self._sock.close()
        self._sock = None
        if self.bind_address.path is not None and self._identity is not None:
            remove_unix_socket(self.bind_address.path, self._identity)
            self._identity = None

    def duplicate(self) -> socket.socket:
        """
        A new socket object on the same bound socket, for one server to own and close.
        """
        if self._sock is None:
            raise ExposerError("the listener is closed")
        duplicate = socket.socket(fileno=os.dup(self._sock.fileno()))
        self._duplicates = [d for d in self._duplicates if d.fileno() != -1]
        self._duplicates.append(duplicate)
        return duplicate

    def close_inherited(self) -> None:
        """
        Close this process's copies without touching the socket file (the parent's).
        """
        for sock in [*self._duplicates, self._sock]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._duplicates = []
        self._sock = None
        self._identity = None
        _OPEN.discard(self)

    def accepting(self) -> bool:
        """
        True once some server called ``listen()`` on the socket.
        """
        if self._sock is None:
            return False
        try:
            return bool(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            return False

    def describe(self, *, tls: bool) -> str:
        """
        ``http(s)://HOST:PORT`` (the real port when bound to 0) or ``unix:PATH``.
        """
        if self.bind_address.path is not None:
            return f"unix:{self.bind_address.path}"
        if self._sock is None:
            raise ExposerError("the listener is closed")
        host, port = self._sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if tls else 'http'}://{shown}:{port}"
