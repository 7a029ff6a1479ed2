"""
Our accept loop and connection streams around hypercorn's per-connection server.

hypercorn 0.18 leaves gaps an exposer must close (../shared/PEERS.md): no read timeout
by default (and one that would also cut idle keep-alive), a header-size bound that a
single large write bypasses, h2c upgrades and HTTP/2 prior knowledge it performs before
the app sees the request, no write timeout, no connection cap, and TLS handshakes whose
failures never reach the app. So we own the accept loop and wrap each connection:

- :class:`GuardedReader` hands hypercorn one *validated* request head at a time. Bodies
  are never accepted, so the stream is a sequence of heads; each is judged by
  :func:`guards.inspect_head` on the raw bytes. A refused head is replaced by an internal
  request for the app's rejection route (unguessable per-process prefix), so the response
  still comes from the app — ordered by h11, with our headers, logged and counted once —
  and nothing after it is read.
- :class:`GuardedWriter` bounds every ``drain()`` by the write timeout.
- :class:`GuardedServer` caps open connections and performs TLS handshakes itself, so
  failures are counted.

This module is the only one that depends on hypercorn internals (``TCPServer``,
``Lifespan``, ``WorkerContext``, ``wrap_app``); hypercorn is pinned ``<0.19`` and
``tests/test_hardening.py::TestHypercornContract`` fails if those change shape.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from ron_metrics.exporters.prometheus.guards import Rejection, inspect_head

__all__ = ["GuardedServer", "WireEvents", "WireLimits", "rejection_path"]

_HEAD_END = b"\r\n\r\n"
_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class WireLimits:
    """
    Per-connection bounds, all in seconds or bytes.
    """

    read_timeout: float
    write_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_connections: int


class WireEvents(Protocol):
    """
    What the wire layer reports (counters, readiness).
    """

    def timeout(self, op: str) -> None: ...
    def refused_connection(self) -> None: ...
    def tls_handshake(self, *, ok: bool) -> None: ...


def rejection_path(prefix: str, rejection: Rejection) -> str:
    """
    The internal path that asks the app to answer ``rejection``.
    """
    return f"{prefix}{rejection.status}/{rejection.reason}"


class GuardedReader:
    """
    A stream reader for hypercorn that yields only validated request heads.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        limits: WireLimits,
        events: WireEvents,
        reject_prefix: str,
        closed: asyncio.Event,
        drop: Callable[[], None],
        release: Callable[[], None],
    ) -> None:
        self._reader = reader
        self._drop = drop
        self._release = release
        self._limits = limits
        self._events = events
        self._prefix = reject_prefix
        self._closed = closed
        self._buffer = b""
        self._pending = b""
        self._eof = False
        self._rejected = False
        # Set while waiting for the next request head (between requests).
        self.idle_since: float | None = None

    def at_eof(self) -> bool:
        return self._eof and not self._pending

    async def read(self, n: int = -1) -> bytes:
        if not self._pending:
            if self._rejected:
                await self._wait_for_close()
                return b""
            head = await self._next_head()
            if head is None:
                # The peer is gone (or was dropped): free its connection slot now.
                # hypercorn's task for it may linger until its keep-alive timer.
                self._eof = True
                self._release()
                return b""
            self._pending = head
        size = len(self._pending) if n < 0 else n
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    async def _wait_for_close(self) -> None:
        # After a rejection we read nothing more (an announced body stays unread);
        # we only wait for hypercorn to send the answer and close.
        budget = self._limits.write_timeout + self._limits.read_timeout
        try:
            await asyncio.wait_for(self._closed.wait(), budget)
        except TimeoutError:
            self._events.timeout("write")
        self._eof = True

    async def _fill(self, timeout: float, op: str) -> bool:
        if op == "idle":
            self.idle_since = asyncio.get_running_loop().time()
        try:
            data = await asyncio.wait_for(
                self._reader.read(_READ_CHUNK), max(0.0, timeout)
            )
        except TimeoutError:
            self._events.timeout(op)
            # Close now: hypercorn would otherwise keep the connection until its
            # own keep-alive timer ends.
            self._drop()
            return False
        except (ConnectionError, OSError, ssl.SSLError):
            return False
        finally:
            self.idle_since = None
        if not data:
            return False
        self._buffer += data
        return True

    async def _next_head(self) -> bytes | None:
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            # Leading empty lines before a request line are allowed (RFC 9112 §2.2).
            self._buffer = self._buffer.lstrip(b"\r\n")
            end = self._buffer.find(_HEAD_END)
            if end >= 0:
                head, self._buffer = (
                    self._buffer[:end],
                    self._buffer[end + len(_HEAD_END) :],
                )
                return self._judge(head)
            if len(self._buffer) > self._limits.max_header_bytes:
                return self._reject(Rejection(431, "headers", "", close=True))
            if self._buffer.startswith(b"PRI * HTTP/2"):
                return self._reject(Rejection(400, "upgrade", "", close=True))
            if not self._buffer:
                # Between requests hypercorn's keep-alive timer (idle_timeout) closes
                # the connection once the last response is sent; ours is a backstop.
                backstop = self._limits.idle_timeout + self._limits.read_timeout
                if not await self._fill(backstop, "idle"):
                    return None
                continue
            if started is None:
                started = loop.time()
            # Within a head: one read-timeout budget for the whole head, however it drips.
            remaining = self._limits.read_timeout - (loop.time() - started)
            if not await self._fill(remaining, "read"):
                return None

    def _judge(self, head: bytes) -> bytes:
        rejection = inspect_head(head, max_header_bytes=self._limits.max_header_bytes)
        if rejection is not None:
            return self._reject(rejection)
        return head + _HEAD_END

    def _reject(self, rejection: Rejection) -> bytes:
        self._rejected = True
        self._buffer = b""
        path = rejection_path(self._prefix, rejection)
        return f"GET {path} HTTP/1.1\r\nHost: ron-metrics\r\nConnection: close\r\n\r\n".encode()


class GuardedWriter:
    """
    A stream writer for hypercorn whose ``drain()`` is bounded by the write timeout.
    """

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        limits: WireLimits,
        events: WireEvents,
        closed: asyncio.Event,
    ) -> None:
        self._writer = writer
        self._limits = limits
        self._events = events
        self._closed = closed
        self.reader: GuardedReader | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        try:
            await asyncio.wait_for(self._writer.drain(), self._limits.write_timeout)
        except TimeoutError:
            # A client that stopped reading: drop it rather than buffer without bound.
            self._events.timeout("write")
            self._writer.transport.abort()
            self._closed.set()
            raise ConnectionResetError("write timeout") from None

    def write_eof(self) -> None:
        self._writer.write_eof()

    def can_write_eof(self) -> bool:
        return self._writer.can_write_eof()

    def close(self) -> None:
        # hypercorn's keep-alive timer closes idle connections (it knows when a
        # response is still being written; the reader does not): count those.
        idle_since = self.reader.idle_since if self.reader is not None else None
        if not self._closed.is_set() and idle_since is not None:
            idle_for = asyncio.get_running_loop().time() - idle_since
            if idle_for >= self._limits.idle_timeout * 0.9:
                self._events.timeout("idle")
        self._closed.set()
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()


class GuardedServer:
    """
    Accepts connections on an already-bound socket and serves them with hypercorn.
    """

    def __init__(
        self,
        app: Any,
        config: HypercornConfig,
        *,
        limits: WireLimits,
        events: WireEvents,
        reject_prefix: str,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")
        self._config = config
        self._limits = limits
        self._events = events
        self._prefix = reject_prefix
        self._ssl = ssl_context
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = WorkerContext(None)
        # How long in-flight connections may finish at shutdown (set by the sink).
        self.graceful_timeout: float = config.graceful_timeout
        self._lifespan_state: dict[str, Any] = {}

    @property
    def open_connections(self) -> int:
        """
        Connections currently being served.
        """
        return self._open

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._open >= self._limits.max_connections:
            self._events.refused_connection()
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open -= 1

        try:
            await self._serve_connection(reader, writer, release)
        finally:
            release()
            if task is not None:
                self._tasks.discard(task)

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        release: Callable[[], None],
    ) -> None:
        if self._ssl is not None:
            try:
                await writer.start_tls(
                    self._ssl, ssl_handshake_timeout=self._limits.read_timeout
                )
            except (ssl.SSLError, TimeoutError, ConnectionError, OSError):
                self._events.tls_handshake(ok=False)
                writer.transport.abort()
                return
            self._events.tls_handshake(ok=True)
        closed = asyncio.Event()
        guarded_reader = GuardedReader(
            reader,
            limits=self._limits,
            events=self._events,
            reject_prefix=self._prefix,
            closed=closed,
            drop=writer.transport.abort,
            release=release,
        )
        guarded_writer = GuardedWriter(writer, self._limits, self._events, closed)
        guarded_writer.reader = guarded_reader
        loop = asyncio.get_running_loop()
        await TCPServer(
            self._app,
            loop,
            self._config,
            self._context,
            self._lifespan_state,
            guarded_reader,  # type: ignore[arg-type]
            guarded_writer,  # type: ignore[arg-type]
        )

    async def serve(
        self, sock: socket.socket, shutdown_trigger: Callable[[], Awaitable[Any]]
    ) -> None:
        """
        Serve until ``shutdown_trigger`` returns, then drain within ``graceful_timeout``.
        """
        loop = asyncio.get_running_loop()
        lifespan = Lifespan(self._app, self._config, loop, self._lifespan_state)
        lifespan_task = loop.create_task(lifespan.handle_lifespan())
        await lifespan.wait_for_startup()
        server = await asyncio.start_server(
            self._on_connection, sock=sock, backlog=self._config.backlog
        )
        try:
            await shutdown_trigger()
        finally:
            await self._context.terminated.set()
            server.close()
            await server.wait_closed()
            if self._tasks:
                _, pending = await asyncio.wait(
                    set(self._tasks), timeout=self.graceful_timeout
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await lifespan.wait_for_shutdown()
            lifespan_task.cancel()
            await asyncio.gather(lifespan_task, return_exceptions=True)
