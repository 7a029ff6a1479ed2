"""
Differential property test: our parser against h11 (the parser hypercorn uses).

Whatever we accept, h11 must read the same way from the client's own bytes, and the
canonical head we hand on must carry exactly what we judged. Random heads are built
from HTTP's grammar and then mutated byte by byte (line breaks, controls, spaces).
"""

from __future__ import annotations

import h11
from hypothesis import example, given
from hypothesis import strategies as st

from ron_metrics.exporters.prometheus.guards import (
    FORWARDED_HEADERS,
    canonical_head,
    parse_head,
)

LIMIT = 8192
SPECIAL = [b"\r\n", b"\n", b"\r", b"\x00", b"\x0b", b" ", b"\t", b":", b"\xb2", b"\x7f"]

METHODS = st.sampled_from([b"GET", b"get", b"POST", b"HEAD", b"G ET", b"PRI"])
TARGETS = st.sampled_from(
    [b"/metrics", b"/healthz", b"/readyz", b"//metrics", b"/metrics?a=b", b"*", b"/x"]
)
VERSIONS = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "])
NAMES = st.sampled_from(
    [
        b"Host",
        b"Accept",
        b"Accept-Encoding",
        b"User-Agent",
        b"X-Request-Id",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Upgrade",
        b"Connection",
        b"X-A",
    ]
)
VALUES = st.one_of(
    st.sampled_from([b"x", b"0", b"5", b"chunked", b"h2c", b"close", b"a b"]),
    st.binary(max_size=12),
)


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    request_line = b" ".join([draw(METHODS), draw(TARGETS), draw(VERSIONS)])
    lines = [request_line]
    if draw(st.booleans()):
        lines.append(b"Host: " + draw(VALUES))
    lines += [
        draw(NAMES) + b":" + draw(st.sampled_from([b" ", b"", b"\t"])) + draw(VALUES)
        for _ in range(draw(st.integers(0, 4)))
    ]
    head = b"\r\n".join(lines)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(head)))
        head = head[:at] + draw(st.sampled_from(SPECIAL)) + head[at:]
    return head


def h11_reads(raw: bytes) -> h11.Request | None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=LIMIT * 2)
    try:
        connection.receive_data(raw + b"\r\n\r\n")
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


@given(heads())
@example(b"GET /metrics HTTP/1.1\r\nHost: t\nUpgrade: h2c")
@example(b"GET /metrics HTTP/1.1\r\nHost: t\n\nGET /metrics HTTP/2.0")
@example(b"GET /metrics HTTP/1.1\r\nHost: t\nTransfer-Encoding: chunked")
@example(b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2")
def test_accepted_heads_read_the_same_by_h11(head: bytes) -> None:
    """Every head we accept, h11 reads identically; our canonical head says the same."""
    verdict = parse_head(head, max_header_bytes=LIMIT)
    if verdict.rejection is not None:
        return
    theirs = h11_reads(head)
    assert theirs is not None, head
    ours = verdict.head
    assert theirs.method == ours.method
    assert theirs.target == ours.target
    assert theirs.http_version == ours.version
    assert list(theirs.headers) == list(ours.headers)
    handed_on = h11_reads(canonical_head(verdict, b"t").removesuffix(b"\r\n\r\n"))
    assert handed_on is not None
    assert handed_on.target == ours.path
    forwarded = [(k, v) for k, v in ours.headers if k in FORWARDED_HEADERS]
    assert [(k, v) for k, v in handed_on.headers if k in FORWARDED_HEADERS] == (
        forwarded
    )
