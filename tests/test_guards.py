"""
The one request parser: every rule, its boundaries, and the canonical head.
"""

from __future__ import annotations

import h11
import pytest

from ron_metrics.exporters.prometheus.guards import (
    REASONS,
    RequestHead,
    Verdict,
    canonical_head,
    client_text,
    parse_head,
    rejection,
    request_line_of,
)

LIMIT = 8192
GET = b"GET /metrics HTTP/1.1\r\nHost: x"


def verdict_of(head: bytes, limit: int = LIMIT) -> tuple[int, str] | None:
    refusal = parse_head(head, max_header_bytes=limit).rejection
    return None if refusal is None else (refusal.status, refusal.reason)


class TestAccepted:
    @pytest.mark.parametrize(
        "head",
        [
            GET,
            b"GET /healthz HTTP/1.1\r\nHost: x",
            b"GET /readyz HTTP/1.1\r\nHost: x",
            b"GET /metrics HTTP/1.0\r\nHost: x",
            b"GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\nHost: x\r\nContent-Length: 0",
            b"GET /metrics HTTP/1.1\r\nhOsT: x\r\nUser-Agent: a b\tc",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Empty:",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xe9",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0",
        ],
    )
    def test_well_formed_get_passes(self, head: bytes) -> None:
        """Strictly framed, bodiless GETs on a known path are accepted."""
        assert verdict_of(head) is None


MALFORMED = [
    b"GARBAGE",
    b"GET /metrics",
    b"GET  /metrics HTTP/1.1\r\nHost: x",
    b"GET /metrics HTTP/1.1 \r\nHost: x",
    b"G\x00T /metrics HTTP/1.1\r\nHost: x",
    b"GET /met\x00rics HTTP/1.1\r\nHost: x",
    b"GET /met\xffrics HTTP/1.1\r\nHost: x",
    b"GET /metrics HTTP/1.1\r\nNoColon",
    b"GET /metrics HTTP/1.1\r\nBad Name: 1\r\nHost: x",
    b"GET /metrics HTTP/1.1\r\nContent-Length : 0\r\nHost: x",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\tfolded",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded",
    b"GET /metrics HTTP/1.1\r\nHost: x\nUpgrade: h2c",  # bare LF
    b"GET /metrics HTTP/1.1\nHost: x",
    b"GET /metrics HTTP/1.1\r\nHost: x\rX: 1",  # bare CR
    b"GET /metrics HTTP/1.1\r\nHost: x\r",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x00b",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x0bb",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x7fb",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x0b",  # trailing VT is no whitespace
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\x0c",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: \x0ba",
    b"GET /metrics HTTP/1.1\r",
    b"GET /metrics HTTP/1.1",  # no Host
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y",  # two Hosts
    b"GET /metrics HTTP/1.2\r\nHost: x",
    b"GET /metrics HTTP/x.1\r\nHost: x",
    b"GET /metrics http/1.1\r\nHost: x",
]


class TestRefused:
    @pytest.mark.parametrize("head", MALFORMED)
    def test_malformed_heads(self, head: bytes) -> None:
        """Anything not strictly framed is 400 malformed."""
        assert verdict_of(head) == (400, "malformed")

    @pytest.mark.parametrize(
        ("head", "expected"),
        [
            (b"PRI * HTTP/2.0", (400, "upgrade")),
            (b"GET /metrics HTTP/2.0\r\nHost: x", (400, "upgrade")),
            (GET + b"\r\nUpgrade: websocket", (400, "upgrade")),
            (GET + b"\r\nHTTP2-Settings: AAA", (400, "upgrade")),
            (GET + b"\r\nTransfer-Encoding: chunked", (400, "body")),
            (GET + b"\r\nContent-Length: 3", (400, "body")),
            (GET + b"\r\nContent-Length: 1, 2", (400, "body")),
            (GET + b"\r\nContent-Length: 1\r\nContent-Length: 2", (400, "body")),
            (GET + b"\r\nContent-Length: \xb2", (400, "body")),
            (GET + b"\r\nContent-Length: \xb9", (400, "body")),
            (GET + b"\r\nContent-Length: -1", (400, "body")),
            (GET + b"\r\nContent-Length: ", (400, "body")),
            (GET + b"\r\nContent-Length: 8192", (400, "body")),
            (GET + b"\r\nContent-Length: 8193", (413, "oversize")),
            (b"GET /x HTTP/1.1\r\nHost: x", (404, "path")),
            (b"GET //metrics HTTP/1.1\r\nHost: x", (404, "path")),
            (b"GET /%6detrics HTTP/1.1\r\nHost: x", (404, "path")),
            (b"GET /metrics/ HTTP/1.1\r\nHost: x", (404, "path")),
            (b"GET http://x/metrics HTTP/1.1\r\nHost: x", (404, "path")),
            (b"GET * HTTP/1.1\r\nHost: x", (404, "path")),
            (b"POST /x HTTP/1.1\r\nHost: x", (404, "path")),
            (b"POST /metrics HTTP/1.1\r\nHost: x", (405, "method")),
            (b"get /metrics HTTP/1.1\r\nHost: x", (405, "method")),
            (b"Get /metrics HTTP/1.1\r\nHost: x", (405, "method")),
            (b"HEAD /readyz HTTP/1.1\r\nHost: x", (405, "method")),
        ],
    )
    def test_each_rule_has_its_reason(
        self, head: bytes, expected: tuple[int, str]
    ) -> None:
        """Each refused shape maps to exactly its status and counter reason."""
        assert verdict_of(head) == expected

    def test_method_refusal_names_allowed_method(self) -> None:
        """A 405 carries Allow: GET and keeps the connection."""
        refusal = parse_head(
            b"PUT /metrics HTTP/1.1\r\nHost: x", max_header_bytes=LIMIT
        )
        assert refusal.rejection is not None
        assert refusal.rejection.headers == (("Allow", "GET"),)
        assert refusal.rejection.close is False

    @pytest.mark.parametrize("reason", ["malformed", "upgrade", "body", "headers"])
    def test_framing_refusals_close(self, reason: str) -> None:
        """Refusals where bytes may be left unread close the connection."""
        assert rejection(reason).close is True

    def test_every_reason_is_a_distinct_label(self) -> None:
        """The reason table maps each label to one status."""
        assert {status for status, _, _ in REASONS.values()} >= {
            400,
            404,
            405,
            413,
            431,
            503,
        }


class TestParsedFields:
    def test_colon_in_a_value_belongs_to_the_value(self) -> None:
        """A header splits at its first colon: 'Host: example:80' has value 'example:80'."""
        verdict = parse_head(
            b"GET /metrics HTTP/1.1\r\nHost: example:80\r\nX-A:\tb c \t",
            max_header_bytes=LIMIT,
        )
        assert verdict.rejection is None
        assert verdict.head.headers == ((b"host", b"example:80"), (b"x-a", b"b c"))

    @pytest.mark.parametrize(
        ("raw", "method", "target"),
        [
            (b"GET /a HTTP/1.1\r\nX", b"GET", b"/a"),
            (b"GET /x", b"GET", b"/x"),
            (b"GET", b"GET", b""),
            (b"A B\rC D", b"A", b"B"),
            (b"A\nB C", b"A", b""),
            (b"A\tB C", b"A\tB", b"C"),
            (b"X  Y", b"X", b""),
        ],
    )
    def test_refused_heads_keep_what_the_client_sent(
        self, raw: bytes, method: bytes, target: bytes
    ) -> None:
        """For the log, a refused head keeps its method and target as sent."""
        head = request_line_of(raw)
        assert (head.method, head.target) == (method, target)

    @pytest.mark.parametrize(
        ("raw", "method", "target"),
        [
            (b"BREW /pot HTTP/1.1\r\nHost: x\nX: 1", b"BREW", b"/pot"),
            (b"GET /m HTTP/1.1\r\nX: " + b"a" * LIMIT, b"GET", b"/m"),
            (b"GET /m HTTP/9.9\r\nHost: x", b"GET", b"/m"),
            (b"GET /m HTTP/1.1\r\nBad Name: 1", b"GET", b"/m"),
            (b"PUT /metrics HTTP/1.1\r\nHost: x", b"PUT", b"/metrics"),
        ],
    )
    def test_verdicts_carry_the_head(
        self, raw: bytes, method: bytes, target: bytes
    ) -> None:
        """Every verdict, refusals included, names the method and target sent."""
        verdict = parse_head(raw, max_header_bytes=LIMIT)
        assert verdict.rejection is not None
        assert (verdict.head.method, verdict.head.target) == (method, target)

    @pytest.mark.parametrize("reason", sorted(REASONS))
    def test_rejection_comes_from_the_table(self, reason: str) -> None:
        """Status, message and close flag of each reason come from the one table."""
        status, message, close = REASONS[reason]
        refusal = rejection(reason)
        assert (refusal.status, refusal.reason, refusal.message, refusal.close) == (
            status,
            reason,
            message,
            close,
        )


class TestHeaderBound:
    def test_exact_bound_is_accepted_and_one_more_byte_is_not(self) -> None:
        """The bound counts the client's head bytes exactly: N passes, N+1 is 431."""
        base = GET + b"\r\nX: "
        exact = base + b"a" * (LIMIT - len(base))
        assert len(exact) == LIMIT
        assert verdict_of(exact) is None
        assert verdict_of(exact + b"a") == (431, "headers")


class TestKeepAlive:
    @pytest.mark.parametrize(
        ("head", "keep"),
        [
            (GET, True),
            (GET + b"\r\nConnection: close", False),
            (GET + b"\r\nConnection: keep-alive, Close", False),
            (b"GET /metrics HTTP/1.0\r\nHost: x", False),
            (b"GET /metrics HTTP/1.0\r\nHost: x\r\nConnection: keep-alive", True),
        ],
    )
    def test_connection_semantics(self, head: bytes, keep: bool) -> None:
        """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 the reverse."""
        assert parse_head(head, max_header_bytes=LIMIT).head.keep_alive is keep


def h11_parse(raw: bytes) -> h11.Request:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    event = connection.next_event()
    assert isinstance(event, h11.Request)
    return event


class TestCanonicalHead:
    def test_accepted_head_keeps_path_and_forwarded_headers_only(self) -> None:
        """The server behind us sees our path, our Host, and only the headers we read."""
        head = (
            b"GET /metrics?q=1 HTTP/1.1\r\nHost: evil\r\nAccept: text/plain\r\n"
            b"Accept-Encoding: gzip\r\nUser-Agent: ua\r\nX-Request-Id: r1\r\n"
            b"X-Ron-Metrics-Verdict: forged\r\nX-Other: 1"
        )
        verdict = parse_head(head, max_header_bytes=LIMIT)
        request = h11_parse(canonical_head(verdict, b"tok"))
        assert request.method == b"GET"
        assert request.target == b"/metrics"
        assert list(request.headers) == [
            (b"host", b"ron-metrics"),
            (b"x-ron-metrics-verdict", b"tok"),
            (b"accept", b"text/plain"),
            (b"accept-encoding", b"gzip"),
            (b"user-agent", b"ua"),
            (b"x-request-id", b"r1"),
        ]

    def test_refused_head_becomes_a_closing_request_for_the_app(self) -> None:
        """A refusal reaches the app as a bare request that closes the connection."""
        verdict = Verdict(RequestHead(method=b"BREW"), rejection("malformed"))
        request = h11_parse(canonical_head(verdict, b"t"))
        assert (request.method, request.target) == (b"GET", b"/")
        assert (b"connection", b"close") in list(request.headers)

    def test_http10_head_closes(self) -> None:
        """A served HTTP/1.0 request closes the connection after its answer."""
        verdict = parse_head(
            b"GET /healthz HTTP/1.0\r\nHost: x", max_header_bytes=LIMIT
        )
        assert (b"connection", b"close") in list(
            h11_parse(canonical_head(verdict, b"t")).headers
        )


class TestClientText:
    @pytest.mark.parametrize(
        ("raw", "text"),
        [
            (b"GET", "GET"),
            (b"a\x00b\nc\xff", "a\\x00b\\x0ac\\xff"),
            (b"\x1f !~\x7f\x80", "\\x1f !~\\x7f\\x80"),
            (b"x" * 200, "x" * 128 + "…"),
            (b"x" * 128, "x" * 128),
            (b"x" * 129, "x" * 128 + "…"),
        ],
    )
    def test_bounded_and_escaped(self, raw: bytes, text: str) -> None:
        """Client-sent fields are logged escaped and cut at 128 bytes."""
        assert client_text(raw) == text
