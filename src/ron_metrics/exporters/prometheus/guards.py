"""
The exposer's one request parser and its verdicts.

Every request head is parsed here exactly once, strictly, on the raw bytes the
client sent. An accepted head is handed to the HTTP server as a *canonical*
re-serialisation of what was judged (:func:`canonical_head`), never as the
client's bytes, so no byte sequence can be read one way here and another way by
the server's own parser. A refused head becomes a :class:`Verdict` carrying a
:class:`Rejection`, which the app answers, counts and logs.

Rules (in the order they are judged, so each refusal has exactly one reason):

1. Framing: lines end in CRLF only; a bare LF, a bare CR, NUL or any other
   control byte in the request line or a header → 400 ``malformed``. The
   request line is ``METHOD SP TARGET SP HTTP/1.x`` with an RFC 9110 token as the
   method; header names are tokens with no whitespace before the colon; folded
   (obs-fold) lines are refused. HTTP/2 (prior knowledge or a 2.x version) →
   400 ``upgrade``.
2. The head (request line and header lines, without the final empty line) is at
   most ``max_header_bytes`` bytes → else 431 ``headers``.
3. Exactly one ``Host`` header → else 400 ``malformed``.
4. ``Upgrade`` or ``HTTP2-Settings`` headers → 400 ``upgrade``.
5. No body: any ``Transfer-Encoding``, a ``Content-Length`` that is not ASCII
   digits or that disagrees with another → 400 ``body``; a length over the
   header bound → 413 ``oversize``; any other non-zero length → 400 ``body``.
6. The target must be exactly one of ``/metrics``, ``/healthz``, ``/readyz``,
   optionally followed by ``?query`` (ignored). No normalisation: ``//metrics``,
   ``/%6detrics``, ``/metrics/`` and absolute-form targets are 404 ``path``.
7. The method must be exactly ``GET`` (methods are case-sensitive) → else 405
   ``method`` with ``Allow: GET``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "FORWARDED_HEADERS",
    "KNOWN_PATHS",
    "REASONS",
    "Rejection",
    "RequestHead",
    "Verdict",
    "canonical_head",
    "client_text",
    "parse_head",
    "rejection",
]

KNOWN_PATHS = frozenset({b"/metrics", b"/healthz", b"/readyz"})
# The only request headers the server behind us ever sees (lower-case names).
FORWARDED_HEADERS = frozenset(
    {b"accept", b"accept-encoding", b"user-agent", b"x-request-id"}
)
# How much of a client-sent field a log line carries.
MAX_LOGGED_CHARS = 128

# One table of refusal reasons: label -> (status, response text, close connection).
REASONS: dict[str, tuple[int, str, bool]] = {
    "malformed": (400, "malformed request", True),
    "upgrade": (400, "protocol upgrades and HTTP/2 are not supported", True),
    "body": (400, "request bodies are not accepted", True),
    "oversize": (413, "request bodies are not accepted", True),
    "headers": (431, "request headers too large", True),
    "path": (404, "not found", False),
    "method": (405, "method not allowed", False),
    "busy": (503, "Busy", False),
}


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


def rejection(reason: str, *headers: tuple[str, str]) -> Rejection:
    """
    The :class:`Rejection` for ``reason``, from the one table of reasons.
    """
    status, message, close = REASONS[reason]
    return Rejection(status, reason, message, headers=headers, close=close)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """
    What the client sent, as far as it could be read (raw bytes, for logging).
    """

    method: bytes = b""
    target: bytes = b""
    version: bytes = b"1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def path(self) -> bytes:
        """
        The target without its query string.
        """
        return self.target.partition(b"?")[0]

    def header(self, name: bytes) -> bytes | None:
        """
        The first value of header ``name`` (lower-case), if any.
        """
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        """
        Whether the connection may carry another request after this one.
        """
        tokens = {
            token.strip().lower()
            for _, value in self.headers_named(b"connection")
            for token in value.split(b",")
        }
        if self.version == b"1.0":
            return b"keep-alive" in tokens
        return b"close" not in tokens

    def headers_named(self, name: bytes) -> list[tuple[bytes, bytes]]:
        """
        Every header called ``name`` (lower-case), in order.
        """
        return [(key, value) for key, value in self.headers if key == name]


@dataclass(slots=True)
class Verdict:
    """
    The one decision about one request: its head and, if refused, why.

    ``finished`` callbacks run once the response's last byte was handed to the
    transport (or the request was dropped): that is when the request stops
    counting against the in-flight and pending-byte bounds.
    """

    head: RequestHead
    rejection: Rejection | None = None
    finished: list[Callable[[], None]] = field(default_factory=list)


def client_text(raw: bytes) -> str:
    """
    A client-sent field made safe for a log line: bounded, non-printables escaped.
    """
    cut = raw[:MAX_LOGGED_CHARS]
    text = "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in cut)
    return text + ("…" if len(raw) > MAX_LOGGED_CHARS else "")


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
# Visible ASCII and obs-text, with single spaces or tabs inside (RFC 9110 §5.5).
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")
_DIGITS = re.compile(rb"[0-9]+")
# A line break that is not CRLF: LF without CR before it, or CR without LF after it.
BARE_LINE_BREAK = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")


_FIRST_LINE = re.compile(rb"[^\r\n]*")


def request_line_of(data: bytes) -> RequestHead:
    """
    The method and target of a (possibly incomplete or malformed) head, for logging.
    """
    first = _FIRST_LINE.match(data)
    line = first.group() if first else b""
    parts = line.split(b" ")
    method = parts[0]
    target = parts[1] if len(parts) > 1 else b""
    return RequestHead(method=method, target=target)


def _parse_request_line(line: bytes) -> RequestHead | Rejection:
    if line.startswith(b"PRI * HTTP/2"):
        return rejection("upgrade")
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        return rejection("malformed")
    method, target, version = parts
    match = _VERSION.fullmatch(version)
    if match is None or not _TARGET.fullmatch(target):
        return rejection("malformed")
    if match.group(1) != b"1":
        return rejection("upgrade")
    if match.group(2) not in {b"0", b"1"}:
        return rejection("malformed")
    return RequestHead(method=method, target=target, version=version[5:])


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]] | Rejection:
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        # Whitespace before the colon and folded lines are classic smuggling
        # shapes: refuse rather than guess how another parser would read them.
        if not colon or not _TOKEN.fullmatch(name):
            return rejection("malformed")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            return rejection("malformed")
        headers.append((name.lower(), value))
    return headers


def _body_rejection(head: RequestHead, max_body_hint: int) -> Rejection | None:
    if head.headers_named(b"transfer-encoding"):
        # No body is ever accepted; with Content-Length too it is a smuggling shape.
        return rejection("body")
    # (Field values hold no whitespace but spaces and tabs: strip() strips those.)
    values = {
        item.strip()
        for _, value in head.headers_named(b"content-length")
        for item in value.split(b",")
    }
    if not values:
        return None
    if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
        return rejection("body")
    length = int(next(iter(values)))
    if length == 0:
        return None
    if length > max_body_hint:
        return rejection("oversize")
    return rejection("body")


def _semantic_rejection(head: RequestHead, max_header_bytes: int) -> Rejection | None:
    if len(head.headers_named(b"host")) != 1:
        return rejection("malformed")
    if (
        head.header(b"upgrade") is not None
        or head.header(b"http2-settings") is not None
    ):
        return rejection("upgrade")
    if body := _body_rejection(head, max_header_bytes):
        return body
    if head.path not in KNOWN_PATHS:
        return rejection("path")
    if head.method != b"GET":
        return rejection("method", ("Allow", "GET"))
    return None


def parse_head(head: bytes, *, max_header_bytes: int) -> Verdict:
    """
    Judge one raw request head (request line and header lines, no final CRLF CRLF).

    Returns:
        The :class:`Verdict`: the parsed head, and a rejection if it is refused.
    """
    if len(head) > max_header_bytes:
        return Verdict(request_line_of(head), rejection("headers"))
    if BARE_LINE_BREAK.search(head):
        # (A CR at the very end is refused below: no field may hold a CR.)
        return Verdict(request_line_of(head), rejection("malformed"))
    lines = head.split(b"\r\n")
    parsed = _parse_request_line(lines[0])
    if isinstance(parsed, Rejection):
        return Verdict(request_line_of(head), parsed)
    headers = _parse_headers(lines[1:])
    if isinstance(headers, Rejection):
        return Verdict(parsed, headers)
    parsed = RequestHead(
        method=parsed.method,
        target=parsed.target,
        version=parsed.version,
        headers=tuple(headers),
    )
    return Verdict(parsed, _semantic_rejection(parsed, max_header_bytes))


def canonical_head(verdict: Verdict, token: bytes) -> bytes:
    """
    The head the HTTP server behind us parses: built by us, never the client's bytes.

    A refused request becomes a bare ``GET /`` the app answers from the verdict; an
    accepted one keeps its path, version and the few headers the app reads. Every
    field comes from the strict parse above, so it holds no byte the server could
    read differently.
    """
    head = verdict.head
    keep_alive = verdict.rejection is None and head.keep_alive
    target = head.path if verdict.rejection is None else b"/"
    lines = [
        b"GET " + target + b" HTTP/1.1",
        b"Host: ron-metrics",
        b"X-Ron-Metrics-Verdict: " + token,
    ]
    if verdict.rejection is None:
        lines += [
            name + b": " + value
            for name, value in head.headers
            if name in FORWARDED_HEADERS
        ]
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"
