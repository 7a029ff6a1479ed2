"""
Our accept loop and connection streams around hypercorn's per-connection server.

hypercorn 0.18 leaves gaps an exposer must close: no read timeout by default (and one
that would also cut idle keep-alive), a header-size bound that a single large write
bypasses, h2c upgrades and HTTP/2 prior knowledge it performs before the app sees the
request, no write timeout, no connection cap, and TLS handshakes whose failures never
reach the app. So we own the accept loop and wrap each connection:

- :mod:`._streams` reads and writes each connection (one strict parse, bounded
  reads and writes); :mod:`._verdicts` carries each verdict to the app, so every
  answer — refusals included — comes from the app: ordered by h11, with our
  headers, logged and counted once.
- :class:`GuardedServer` caps open connections and performs TLS handshakes itself, so
  failures are counted.

This module is the only one that depends on hypercorn internals (``TCPServer``,
``Lifespan``, ``WorkerContext``, ``wrap_app``); ``tests/test_hardening.py::
TestHypercornContract`` fails if those change shape.
"""

import asyncio
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from ron_metrics.exporters.prometheus._peer import (
    fileno_of,
    peer_finished,
    peer_of,
    socket_closed,
)
from ron_metrics.exporters.prometheus._streams import (
    ConnectionEvents,
    GuardedReader,
    GuardedWriter,
    WireEvents,
    WireLimits,
)
from ron_metrics.exporters.prometheus._verdicts import VerdictApp, VerdictTable

__all__ = ["GuardedServer"]


# How many clients that closed before being served are answered at once: enough
# that a few stalled writes (half-closed clients that never read) do not stop the
# rest, few enough that live clients are not kept waiting behind them.
_FINISHED_AT_ONCE = 4


def _nothing() -> None:
    pass


async def _until_peer_gone(serving: asyncio.Task[None], gone: asyncio.Event) -> None:
    # Once the peer is gone (closed, reset, half-closed after its last request)
    # and every answer was handed over, the connection is over: hypercorn would
    # keep its task, and the socket, until its keep-alive timer ends.
    watching = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({serving, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not serving.done():
            serving.cancel()  # its cleanup closes the socket
        await asyncio.gather(serving, watching, return_exceptions=True)


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
        self._finished_queued = 0
        # Clients that closed before being served are answered a few at a time.
        self._finished_turn = asyncio.Semaphore(_FINISHED_AT_ONCE)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = WorkerContext(None)
        # How long in-flight connections may finish at shutdown (set by the sink).
        self.graceful_timeout: float = config.graceful_timeout
        self._lifespan_state: dict[str, Any] = {}
        # Set while our accept loop is registered with the event loop.
        self.serving = asyncio.Event()

    @property
    def open_connections(self) -> int:
        """
        Connections currently being served.
        """
        return self._open

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        fd = fileno_of(writer)
        if fd is not None and peer_finished(fd):
            await self._tracked(self._serve_finished(reader, writer))
            return
        if self._open >= self._limits.max_connections:
            self._refuse(writer)
            return
        self._open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open -= 1

        try:
            await self._tracked(self._serve_connection(reader, writer, release))
        finally:
            release()

    async def _serve_finished(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The client sent its request and closed (or half-closed) before we got to
        # it. A half-closed client may still read, so it is answered, but it holds
        # no connection slot and waits behind live clients: a burst of them can
        # neither lock live clients out nor delay them. Their number is capped
        # like live connections, so they cannot pile up descriptors either.
        if self._finished_queued >= self._limits.max_connections:
            self._refuse(writer)
            return
        self._finished_queued += 1
        try:
            async with self._finished_turn:
                await self._serve_connection(reader, writer, _nothing)
        finally:
            self._finished_queued -= 1

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self._events.refused_connection(peer=peer_of(writer))
        writer.transport.abort()

    async def _tracked(self, serving: Awaitable[None]) -> None:
        # Connections in flight are drained (then cancelled) at shutdown.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await serving
        finally:
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
        gone = asyncio.Event()

        def peer_gone() -> None:
            release()
            gone.set()

        guarded_reader = GuardedReader(
            reader,
            limits=self._limits,
            events=events,
            verdicts=self._verdicts,
            closed=closed,
            drop=writer.transport.abort,
            release=peer_gone,
            raw_fd=None if self._ssl is not None else fileno_of(writer),
        )
        guarded_writer = GuardedWriter(writer, self._limits, events, closed)
        guarded_writer.reader = guarded_reader
        loop = asyncio.get_running_loop()
        server = TCPServer(
            self._app,
            loop,
            self._config,
            self._context,
            self._lifespan_state,
            guarded_reader,  # type: ignore[arg-type]  # duck-typed asyncio stream
            guarded_writer,  # type: ignore[arg-type]  # duck-typed asyncio stream
        )
        await _until_peer_gone(loop.create_task(server.run()), gone)

    async def _client_spoke(self, writer: asyncio.StreamWriter) -> bool | None:
        """
        Wait for the client's first byte without consuming it.

        Returns:
            True once bytes are waiting, False if the peer closed first, None if
            it stayed silent for the read timeout.
        """
        fd = fileno_of(writer)
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
        return not socket_closed(fd)

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
        self.serving.set()
        try:
            await shutdown_trigger()
        finally:
            self.serving.clear()
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
