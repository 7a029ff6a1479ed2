"""
Our accept loop and connection streams around hypercorn's per-connection server.

hypercorn 0.18 leaves gaps an exposer must close: no read timeout by default (and one
that would also cut idle keep-alive), a header-size bound that a single large write
bypasses, h2c upgrades and HTTP/2 prior knowledge it performs before the app sees the
request, no write timeout, no connection cap, and TLS handshakes whose failures never
reach the app. So we own the accept loop and wrap each connection:

- :class:`GuardedReader` is the only reader of the client's bytes. It finds each
  request head, has :func:`guards.parse_head` judge it strictly, and hands hypercorn
  a canonical head *built from that parse* (never the client's bytes), carrying a
  token that names the :class:`~guards.Verdict`. Bodies are never accepted, so the
  stream is a sequence of heads, served one at a time: the next head is read only
  once the previous response is written. After a refusal nothing more is read.
- :class:`VerdictApp` hands each verdict to the app through the ASGI scope, so every
  answer — refusals included — comes from the app: ordered by h11, with our
  headers, logged and counted once.
- :class:`GuardedWriter` bounds every ``drain()`` by the write timeout.
- :class:`GuardedServer` caps open connections and performs TLS handshakes itself, so
  failures are counted.

This module is the only one that depends on hypercorn internals (``TCPServer``,
``Lifespan``, ``WorkerContext``, ``wrap_app``); ``tests/test_hardening.py::
TestHypercornContract`` fails if those change shape.
"""

from __future__ import annotations

import asyncio
import os
import secrets
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

from ron_metrics.exporters.prometheus.guards import (
    BARE_LINE_BREAK,
    Verdict,
    canonical_head,
    parse_head,
    rejection,
    request_line_of,
)

__all__ = [
    "VERDICT_SCOPE_KEY",
    "ConnectionEvents",
    "GuardedServer",
    "VerdictApp",
    "VerdictTable",
    "WireEvents",
    "WireLimits",
]

# The canonical head names its verdict in this header; the app finds it in the scope.
VERDICT_HEADER = b"x-ron-metrics-verdict"
VERDICT_SCOPE_KEY = "ron_metrics.verdict"

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
    What the wire layer reports (counters, readiness, audit log), with the peer.
    """

    def timeout(self, op: str, *, peer: str) -> None: ...
    def refused_connection(self, *, peer: str) -> None: ...
    def tls_handshake(self, *, ok: bool, peer: str, error: str = "") -> None: ...
    def tls_probe(self, *, peer: str) -> None: ...


class ConnectionEvents:
    """
    The wire events of one connection: the sink's, with this peer filled in.
    """

    def __init__(self, events: WireEvents, peer: str) -> None:
        self._events = events
        self.peer = peer

    def timeout(self, op: str) -> None:
        self._events.timeout(op, peer=self.peer)

    def tls_handshake(self, *, ok: bool, error: str = "") -> None:
        self._events.tls_handshake(ok=ok, peer=self.peer, error=error)

    def tls_probe(self) -> None:
        self._events.tls_probe(peer=self.peer)


def peer_of(writer: asyncio.StreamWriter) -> str:
    """
    ``HOST:PORT`` of the client, or ``unix`` for a Unix-socket peer.
    """
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return "unix"


def _socket_closed(fd: int) -> bool:
    # The peer's FIN is visible to a non-blocking peek once its data was read.
    with socket.socket(fileno=os.dup(fd)) as peek:
        try:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


class VerdictTable:
    """
    Verdicts waiting for the app, keyed by an unguessable per-request token.

    The canonical head carries the token; the app takes the verdict back out and
    answers from it. A client cannot name a token: client headers of that name
    are never forwarded.
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(12)
        self._next = 0
        self._waiting: dict[str, tuple[Verdict, Callable[[], None]]] = {}

    def put(self, verdict: Verdict, on_done: Callable[[], None]) -> bytes:
        self._next += 1
        token = f"{self._prefix}-{self._next}"
        self._waiting[token] = (verdict, on_done)
        return token.encode("ascii")

    def take(self, token: str) -> tuple[Verdict, Callable[[], None]] | None:
        return self._waiting.pop(token, None)

    def __len__(self) -> int:
        return len(self._waiting)


class VerdictApp:
    """
    ASGI wrapper: puts each request's verdict in its scope and signals the end.
    """

    def __init__(self, app: Any, table: VerdictTable) -> None:
        self._app = app
        self._table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        token = next(
            (v.decode("ascii") for k, v in scope["headers"] if k == VERDICT_HEADER),
            "",
        )
        entry = self._table.take(token)
        scope = {**scope, VERDICT_SCOPE_KEY: entry[0] if entry else None}
        try:
            await self._app(scope, receive, send)
        finally:
            if entry is not None:
                verdict, on_done = entry
                for finished in verdict.finished:
                    finished()
                on_done()


class GuardedReader:
    """
    A stream reader for hypercorn that yields only canonical, judged request heads.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        limits: WireLimits,
        events: ConnectionEvents,
        verdicts: VerdictTable,
        closed: asyncio.Event,
        drop: Callable[[], None],
        release: Callable[[], None],
        raw_fd: int | None = None,
    ) -> None:
        self._reader = reader
        self._raw_fd = raw_fd
        self._drop = drop
        self._release = release
        self._limits = limits
        self._events = events
        self._verdicts = verdicts
        self._closed = closed
        self._buffer = b""
        self._pending = b""
        self._eof = False
        self._last = False
        self._served = 0
        self._response_done = asyncio.Event()
        self._response_done.set()
        # Set while waiting for the next request head (between requests).
        self.idle_since: float | None = None

    def at_eof(self) -> bool:
        return self._eof and not self._pending

    async def read(self, n: int = -1) -> bytes:
        if not self._pending:
            # One request at a time: the next head is read only once the previous
            # response was handed to the transport.
            await self._response_done.wait()
            if self._last or (self._served and self._peer_closed()):
                # Refused, closing, or the peer is gone: pipelined heads already
                # buffered are neither rendered nor logged.
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

    def _peer_closed(self) -> bool:
        if self._reader.at_eof():
            return True
        # Pipelined heads are buffered: has the peer closed behind them? (Over TLS
        # the TCP state is hidden; the close is then seen when reading on.)
        return (
            bool(self._buffer)
            and self._raw_fd is not None
            and _socket_closed(self._raw_fd)
        )

    async def _wait_for_close(self) -> None:
        # After a refusal we read nothing more (an announced body stays unread);
        # we only wait for hypercorn to send the answer and close.
        budget = self._limits.write_timeout + self._limits.read_timeout
        try:
            await asyncio.wait_for(self._closed.wait(), budget)
        except TimeoutError:
            self._events.timeout("write")
            self._drop()
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

    def _framing_rejection(self) -> Verdict | None:
        buffer = self._buffer
        if buffer.startswith(b"PRI * HTTP/2"):
            return Verdict(request_line_of(buffer), rejection("upgrade"))
        if BARE_LINE_BREAK.search(buffer):
            # A line break only one parser would see: refuse before it ends a head.
            return Verdict(request_line_of(buffer), rejection("malformed"))
        if len(buffer) >= self._limits.max_header_bytes + len(_HEAD_END):
            return Verdict(request_line_of(buffer), rejection("headers"))
        return None

    async def _next_head(self) -> bytes | None:
        loop = asyncio.get_running_loop()
        started: float | None = None
        while True:
            # Leading empty lines before a request line are allowed (RFC 9112 §2.2).
            while self._buffer.startswith(b"\r\n"):
                self._buffer = self._buffer[2:]
            end = self._buffer.find(_HEAD_END)
            if end >= 0:
                head, self._buffer = (
                    self._buffer[:end],
                    self._buffer[end + len(_HEAD_END) :],
                )
                return self._hand_over(
                    parse_head(head, max_header_bytes=self._limits.max_header_bytes)
                )
            if (refused := self._framing_rejection()) is not None:
                return self._hand_over(refused)
            if not self._buffer and self._served:
                # Between requests hypercorn's keep-alive timer (idle_timeout) closes
                # the connection once the last response is sent; ours is a backstop.
                backstop = self._limits.idle_timeout + self._limits.read_timeout
                if not await self._fill(backstop, "idle"):
                    return None
                continue
            if started is None:
                started = loop.time()
            # A request head, the first one included, must arrive whole within one
            # read timeout, however it drips (a silent connection holds no slot long).
            remaining = self._limits.read_timeout - (loop.time() - started)
            if not await self._fill(remaining, "read"):
                return None

    def _hand_over(self, verdict: Verdict) -> bytes:
        self._served += 1
        if verdict.rejection is not None or not verdict.head.keep_alive:
            self._last = True
            self._buffer = b""
        self._response_done.clear()
        token = self._verdicts.put(verdict, self._response_done.set)
        return canonical_head(verdict, token)


class GuardedWriter:
    """
    A stream writer for hypercorn whose ``drain()`` is bounded by the write timeout.
    """

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        limits: WireLimits,
        events: ConnectionEvents,
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


def _fileno(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


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
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._verdicts = VerdictTable()
        self._app = wrap_app(
            VerdictApp(app, self._verdicts), config.wsgi_max_body_size, "asgi"
        )
        self._config = config
        self._limits = limits
        self._events = events
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
            self._events.refused_connection(peer=peer_of(writer))
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
        events = ConnectionEvents(self._events, peer_of(writer))
        if self._ssl is not None:
            spoke = await self._client_spoke(writer)
            if not spoke:
                # Connected and closed (or stayed silent) without a byte of TLS: a
                # port probe or health check, not a failed handshake.
                if spoke is None:
                    events.timeout("read")
                else:
                    events.tls_probe()
                writer.transport.abort()
                return
            try:
                await writer.start_tls(
                    self._ssl, ssl_handshake_timeout=self._limits.read_timeout
                )
            except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as exc:
                events.tls_handshake(ok=False, error=type(exc).__name__)
                writer.transport.abort()
                return
            events.tls_handshake(ok=True)
        closed = asyncio.Event()
        guarded_reader = GuardedReader(
            reader,
            limits=self._limits,
            events=events,
            verdicts=self._verdicts,
            closed=closed,
            drop=writer.transport.abort,
            release=release,
            raw_fd=None if self._ssl is not None else _fileno(writer),
        )
        guarded_writer = GuardedWriter(writer, self._limits, events, closed)
        guarded_writer.reader = guarded_reader
        loop = asyncio.get_running_loop()
        await TCPServer(
            self._app,
            loop,
            self._config,
            self._context,
            self._lifespan_state,
            guarded_reader,  # type: ignore[arg-type]  # duck-typed asyncio stream
            guarded_writer,  # type: ignore[arg-type]  # duck-typed asyncio stream
        )

    async def _client_spoke(self, writer: asyncio.StreamWriter) -> bool | None:
        """
        Wait for the client's first byte without consuming it.

        Returns:
            True once bytes are waiting, False if the peer closed first, None if
            it stayed silent for the read timeout.
        """
        fd = _fileno(writer)
        if fd is None:
            return True
        # The transport must not read the ClientHello before start_tls takes over.
        transport = writer.transport
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        watch = os.dup(fd)  # the transport owns fd; the loop watches a duplicate
        loop.add_reader(watch, wake)
        try:
            await asyncio.wait_for(readable, self._limits.read_timeout)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(watch)
            os.close(watch)
        return not _socket_closed(fd)

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
