"""
The connection streams around hypercorn's per-connection server.

- :class:`GuardedReader` is the only reader of the client's bytes. It finds each
  request head, has :func:`guards.parse_head` judge it strictly, and hands hypercorn
  a canonical head *built from that parse* (never the client's bytes), carrying a
  token that names the :class:`~guards.Verdict`. Bodies are never accepted, so the
  stream is a sequence of heads, served one at a time: the next head is read only
  once the previous response is written. After a refusal nothing more is read.
- :class:`GuardedWriter` bounds every ``drain()`` by the write timeout.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ron_metrics.exporters.prometheus._peer import socket_closed
from ron_metrics.exporters.prometheus._verdicts import VerdictTable
from ron_metrics.exporters.prometheus.guards import (
    BARE_LINE_BREAK,
    Verdict,
    canonical_head,
    parse_head,
    rejection,
    request_line_of,
)

__all__ = [
    "ConnectionEvents",
    "GuardedReader",
    "GuardedWriter",
    "WireEvents",
    "WireLimits",
]

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
        self.idle_since: float | None = None  # set while waiting between requests

    def at_eof(self) -> bool:
        return self._eof and not self._pending

    async def read(self, n: int = -1) -> bytes:
        if not self._pending:
            # One request at a time: the next head is read only once the previous
            # response was handed to the transport — or the connection closed
            # under it (a peer that reset while its answer was being written).
            if not await self._previous_answered():
                return self._end()
            if self._served and self._peer_closed():
                # The peer is gone: its slot is free now, whatever timer hypercorn
                # runs; pipelined heads already buffered are neither served nor logged.
                return self._end()
            if self._last:  # refused or closing: hypercorn answers and closes
                await self._wait_for_close()
                return b""
            head = await self._next_head()
            if head is None:
                # The peer is gone (or was dropped): free its connection slot now.
                # hypercorn's task for it may linger until its keep-alive timer.
                return self._end()
            self._pending = head
        size = len(self._pending) if n < 0 else n
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk

    async def _previous_answered(self) -> bool:
        if self._response_done.is_set():
            return True
        answered = asyncio.ensure_future(self._response_done.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({answered, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
            closed.cancel()
        return self._response_done.is_set()

    def _end(self) -> bytes:
        self._eof = True
        self._release()
        return b""

    def _peer_closed(self) -> bool:
        if self._reader.at_eof():
            return True
        # Pipelined heads are buffered: has the peer closed behind them? (Over TLS
        # the TCP state is hidden; the close is then seen when reading on.)
        return (
            bool(self._buffer)
            and self._raw_fd is not None
            and socket_closed(self._raw_fd)
        )

    async def _wait_for_close(self) -> None:
        # After a refusal nothing more is read (an announced body stays unread):
        # hypercorn sends the answer and closes; a stalled write is the writer's.
        budget = self._limits.write_timeout + self._limits.read_timeout
        try:
            await asyncio.wait_for(self._closed.wait(), budget)
        except TimeoutError:
            self._drop()
        self._end()

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
        if self._writer.transport.is_closing():  # the peer is gone: stop here
            self._closed.set()
            raise ConnectionResetError("the connection is closed")
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
