"""
The exposer's request policy as one pure function.

Order matters and each request is judged once, so each rejection is counted
exactly once: protocol upgrades, then bodies (and smuggling shapes), then header
size, then the path, then the method.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["KNOWN_PATHS", "Rejection", "check_request", "inspect_head"]

KNOWN_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
# Per-header overhead in HTTP/1.1 framing (": " and CRLF), for a wire-like total.
_HEADER_OVERHEAD = 4


@dataclass(frozen=True, slots=True)
class Rejection:
    """
    Why a request is refused and how to answer it.

    Attributes:
        status: HTTP status code.
        reason: The ``rejected_total{reason}`` label.
        message: Short plain-text body.
        headers: Extra response headers.
        close: Close the connection after answering (a body may be unread).
    """

    status: int
    reason: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


def _body_rejection(
    content_lengths: list[str], transfer_encodings: list[str], max_body_hint: int
) -> Rejection | None:
    if transfer_encodings:
        # No body is ever accepted; with Content-Length too it is a smuggling shape.
        return Rejection(400, "body", "request bodies are not accepted", close=True)
    if not content_lengths:
        return None
    values = {
        value.strip() for joined in content_lengths for value in joined.split(",")
    }
    if len(values) != 1 or not next(iter(values)).isdigit():
        return Rejection(
            400, "body", "conflicting or invalid Content-Length", close=True
        )
    length = int(next(iter(values)))
    if length == 0:
        return None
    if length > max_body_hint:
        return Rejection(413, "oversize", "request bodies are not accepted", close=True)
    return Rejection(400, "body", "request bodies are not accepted", close=True)


def check_request(
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    *,
    max_header_bytes: int,
) -> Rejection | None:
    """
    Judge a request from its head alone, before any body is read.

    Returns:
        ``None`` to serve it, else the :class:`Rejection` to answer with.
    """
    content_lengths: list[str] = []
    transfer_encodings: list[str] = []
    upgrade = False
    header_bytes = 0
    for name, value in headers:
        lowered = name.lower()
        header_bytes += len(name) + len(value) + _HEADER_OVERHEAD
        if lowered == "content-length":
            content_lengths.append(value)
        elif lowered == "transfer-encoding":
            transfer_encodings.append(value)
        elif lowered in {"upgrade", "http2-settings"}:
            upgrade = True
    if upgrade:
        return Rejection(
            400, "upgrade", "protocol upgrades are not supported", close=True
        )
    body = _body_rejection(content_lengths, transfer_encodings, max_header_bytes)
    if body is not None:
        return body
    if header_bytes > max_header_bytes:
        return Rejection(431, "headers", "request headers too large", close=True)
    if path not in KNOWN_PATHS:
        return Rejection(404, "path", "not found")
    if method != "GET":
        return Rejection(
            405, "method", "method not allowed", headers=(("Allow", "GET"),)
        )
    return None


_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REQUEST_LINE = re.compile(rb"^([^ ]+) ([^ ]+) HTTP/(\d)\.(\d)$")


def _malformed(message: str) -> Rejection:
    return Rejection(400, "malformed", message, close=True)


def _check_request_line(line: bytes) -> Rejection | None:
    match = _REQUEST_LINE.match(line)
    if match is None or not _TOKEN.match(match.group(1)):
        if line.startswith(b"PRI * HTTP/2"):
            return Rejection(400, "upgrade", "HTTP/2 is not supported", close=True)
        return _malformed("malformed request line")
    if match.group(3) != b"1":
        return Rejection(400, "upgrade", "only HTTP/1.1 is supported", close=True)
    return None


def _parse_header_lines(lines: list[bytes]) -> list[tuple[str, str]] | Rejection:
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # Whitespace before the colon and obs-fold continuation lines are classic
        # smuggling shapes: refuse rather than guess how a parser would read them.
        if not colon or not _TOKEN.match(name):
            return _malformed("malformed header line")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return headers


def inspect_head(head: bytes, *, max_header_bytes: int) -> Rejection | None:
    """
    Judge one raw HTTP/1.x request head (request line + header lines, no final CRLF)
    on the wire, before hypercorn parses it.

    Only framing concerns are judged here (malformed heads, HTTP/2 and upgrades,
    bodies and smuggling shapes, header size); the path and method are left to
    :func:`check_request` in the app, so every rejection is counted once.
    """
    if len(head) > max_header_bytes:
        return Rejection(431, "headers", "request headers too large", close=True)
    lines = head.split(b"\r\n")
    if rejection := _check_request_line(lines[0]):
        return rejection
    headers = _parse_header_lines(lines[1:])
    if isinstance(headers, Rejection):
        return headers
    # The path and method given here pass by construction; only framing is judged.
    return check_request("GET", "/metrics", headers, max_header_bytes=max_header_bytes)
