"""
End to end on raw sockets: each request shape that once slipped past the guard, or
was answered by the HTTP server itself, now gets one app-made answer — security
headers, one JSON log line with what the client sent, one counter increment.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import sys
import time

import pytest

from conftest import StartFn, prometheus_config
from ron_metrics.testing import sample_value
from test_tls import client_context, tls_exporter
from tls_material import Pki, make_pki
from wire import (
    closed_by_peer,
    connect,
    exchange,
    port_of,
    read_all,
    status_of,
    wait_for_response,
)

H2C_BEHIND_BARE_LF = (
    b"GET /metrics HTTP/1.1\r\nHost: t\nUpgrade: h2c\nConnection: Upgrade, "
    b"HTTP2-Settings\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
)

# (id, raw request, status, reason)
REFUSED = [
    ("bare-lf-h2c", H2C_BEHIND_BARE_LF, 400, "malformed"),
    (
        "bare-lf-smuggle",
        b"GET /metrics HTTP/1.1\r\nHost: t\n\nGET /metrics HTTP/2.0\nHost: t\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "bare-lf-te",
        b"GET /metrics HTTP/1.1\r\nHost: t\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "bare-lf-websocket",
        b"GET /metrics HTTP/1.1\r\nHost: t\nUpgrade: websocket\nConnection: Upgrade\n"
        b"Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        400,
        "malformed",
    ),
    ("lf-only-head", b"GET /metrics HTTP/1.1\nHost: t\n\n", 400, "malformed"),
    (
        "superscript-2-length",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: \xb2\r\n\r\n",
        400,
        "body",
    ),
    (
        "superscript-1-length",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: \xb9\r\n\r\n",
        400,
        "body",
    ),
    ("no-host", b"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "malformed"),
    (
        "two-hosts",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "nul-in-value",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "vt-in-value",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nX: a\x0bb\r\n\r\n",
        400,
        "malformed",
    ),
    (
        "bare-cr-in-value",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
        400,
        "malformed",
    ),
    ("nul-in-path", b"GET /met\x00rics HTTP/1.1\r\nHost: t\r\n\r\n", 400, "malformed"),
    (
        "high-byte-in-path",
        b"GET /met\xffrics HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
        "malformed",
    ),
    ("lower-case-get", b"get /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 405, "method"),
    ("double-slash", b"GET //metrics HTTP/1.1\r\nHost: t\r\n\r\n", 404, "path"),
    ("double-slash-health", b"GET //healthz HTTP/1.1\r\nHost: t\r\n\r\n", 404, "path"),
    ("percent-encoded", b"GET /%6detrics HTTP/1.1\r\nHost: t\r\n\r\n", 404, "path"),
    ("absolute-form", b"GET http://t/metrics HTTP/1.1\r\nHost: t\r\n\r\n", 404, "path"),
]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "ron_metrics.access"
    ]


class TestRefusedOnTheWire:
    @pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
    def test_one_app_made_answer(
        self,
        start_runtime: StartFn,
        caplog: pytest.LogCaptureFixture,
        case: tuple[str, bytes, int, str],
    ) -> None:
        """One HTTP/1.1 answer with our headers, one counter, one JSON log line."""
        _, raw, status, reason = case
        caplog.set_level(logging.INFO, logger="ron_metrics.access")
        runtime = start_runtime(exporter=prometheus_config())
        response = exchange(str(runtime.address), raw, limit=2)
        assert status_of(response) == status, response[:200]
        assert response.count(b"HTTP/1.1 ") == 1
        assert b" 101 " not in response
        lowered = response.lower()
        assert b"cache-control: no-store" in lowered
        assert b"x-content-type-options: nosniff" in lowered
        assert sample_value(runtime, "rejected_total", reason=reason) == 1
        lines = access_lines(caplog)
        assert [(line["status"], line["reason"]) for line in lines] == [
            (status, reason)
        ]
        # The log carries what the client sent, escaped; never an internal path.
        assert lines[0]["method"] == raw.split(b" ", 1)[0].decode("latin-1")
        assert "ron-metrics" not in str(lines[0]["endpoint"])

    def test_bare_lf_h2c_over_tls_gets_no_http2(
        self, start_runtime: StartFn, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """Over TLS too, the hidden h2c upgrade is refused with HTTP/1.1 400."""
        pki: Pki = make_pki(tmp_path_factory.mktemp("pki"))
        runtime = start_runtime(exporter=tls_exporter(pki))
        context: ssl.SSLContext = client_context(pki)
        with (
            socket.create_connection(
                ("127.0.0.1", port_of(str(runtime.address))), timeout=5
            ) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(H2C_BEHIND_BARE_LF)
            response = read_all(tls, 2)
        assert status_of(response) == 400
        assert b" 101 " not in response


class TestHeaderBoundOnTheWire:
    @pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 431)])
    def test_bound_is_what_the_client_sends(
        self, start_runtime: StartFn, extra: int, status: int
    ) -> None:
        """A head of exactly max_header_bytes is served; one byte more is 431."""
        runtime = start_runtime(exporter=prometheus_config(max_header_bytes=2048))
        base = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX: "
        head = base + b"a" * (2048 - len(base) + extra)
        assert status_of(exchange(str(runtime.address), head + b"\r\n\r\n")) == status


class TestPipelining:
    def test_pipelined_requests_after_close_are_not_rendered(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """100 pipelined GETs and a close: once the close is seen, nothing more is served."""
        caplog.set_level(logging.INFO)
        runtime = start_runtime(exporter=prometheus_config())
        # A client in its own process: it sends and closes without waiting for the
        # GIL this in-process server holds while it answers.
        client = (
            "import socket, sys\n"
            "sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "sock.sendall(b'GET /healthz HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n' * 100)\n"
            "sock.close()\n"
        )
        subprocess.run(
            [sys.executable, "-c", client, str(port_of(str(runtime.address)))],
            check=True,
            timeout=30,
        )
        time.sleep(1)
        # The few answered before the close reached the server are logged; the rest
        # are neither rendered nor logged, and nothing but JSON lines is written.
        assert len(access_lines(caplog)) <= 10
        assert not [r for r in caplog.records if r.name == "asyncio"]

    def test_pipelined_requests_are_answered_in_order(
        self, start_runtime: StartFn
    ) -> None:
        """Pipelined GETs on an open connection are all answered, one after another."""
        runtime = start_runtime(exporter=prometheus_config())
        payload = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 5
        payload += b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        response = exchange(str(runtime.address), payload, limit=3)
        assert response.count(b"HTTP/1.1 200") == 6

    def test_http10_request_closes_after_one_answer(
        self, start_runtime: StartFn
    ) -> None:
        """Pipelined HTTP/1.0 requests: the first is answered and the connection closes."""
        runtime = start_runtime(exporter=prometheus_config())
        payload = b"GET /healthz HTTP/1.0\r\nHost: t\r\n\r\n" * 3
        response = exchange(str(runtime.address), payload, limit=3)
        assert response.startswith(b"HTTP/1.1 200")
        assert response.count(b"HTTP/1.1 ") == 1


def exposer_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "ron_metrics.exposer"
    ]


class TestSilentConnections:
    def test_silent_new_connection_is_closed_at_read_timeout(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A silent connection is closed at read_timeout (not idle_timeout) and logged."""
        caplog.set_level(logging.INFO, logger="ron_metrics.exposer")
        # Closed at the idle timeout instead, the socket would outlast the wait.
        runtime = start_runtime(
            exporter=prometheus_config(read_timeout="300ms", idle_timeout="300s")
        )
        with connect(str(runtime.address)) as sock:
            assert closed_by_peer(sock, 60)
        assert sample_value(runtime, "io_timeouts_total", op="read") == 1
        timeouts = [e for e in exposer_events(caplog) if e["event"] == "read_timeout"]
        assert len(timeouts) == 1
        assert timeouts[0]["suppressed"] == 0
        assert str(timeouts[0]["peer_addr"]).startswith("127.0.0.1:")


class TestAuditLog:
    def test_connection_cap_refusals_are_logged_rate_limited(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Refusals at the connection cap are logged: one line, the rest suppressed."""
        caplog.set_level(logging.INFO, logger="ron_metrics.exposer")
        runtime = start_runtime(exporter=prometheus_config(max_connections=2))
        held = [connect(str(runtime.address)) for _ in range(2)]
        try:
            time.sleep(0.2)
            for _ in range(10):
                with connect(str(runtime.address)) as extra:
                    assert closed_by_peer(extra, 30)
        finally:
            for sock in held:
                sock.close()
        assert sample_value(runtime, "rejected_total", reason="connections") == 10
        lines = [
            e for e in exposer_events(caplog) if e["event"] == "connection_refused"
        ]
        assert 1 <= len(lines) < 10
        assert lines[0]["limit"] == 2


def hold_unread_scrape(address: str) -> socket.socket:
    """Ask for /metrics (no gzip) on a socket that will not read the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port_of(address)))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
    # Once the answer starts, its body is rendered and stuck in the socket buffers.
    assert wait_for_response(sock), "the scrape was never answered"
    return sock


def wide_counter(runtime: object, series: int) -> None:
    counter = runtime.get_meter("app").create_counter("wide")  # type: ignore[attr-defined]  # a Runtime
    for index in range(series):
        counter.add(1, {"k": f"value-{index:06d}-" + "x" * 60})


class TestPendingResponses:
    @pytest.mark.timeout(600)  # heavy: 100k series; more than the suite's hang guard
    def test_request_counts_in_flight_until_its_body_is_written(
        self, start_runtime: StartFn
    ) -> None:
        """With max_in_flight=1, a body still being written keeps the slot taken."""
        runtime = start_runtime(
            cardinality={"max_series": 120_000},
            exporter=prometheus_config(
                max_in_flight=1, gzip=False, write_timeout="8s", scrape_timeout="60s"
            ),
        )
        # ~9 MB of text: more than loopback's kernel buffers absorb.
        wide_counter(runtime, 100_000)
        address = str(runtime.address)
        holder = hold_unread_scrape(address)
        try:
            assert (
                status_of(
                    exchange(
                        address,
                        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    )
                )
                == 503
            )
        finally:
            holder.close()
        deadline = time.monotonic() + 30
        status = 0
        while status != 200 and time.monotonic() < deadline:
            status = status_of(
                exchange(
                    address,
                    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                )
            )
        assert status == 200

    @pytest.mark.timeout(600)  # heavy: 100k series; more than the suite's hang guard
    def test_pending_byte_budget_answers_busy(self, start_runtime: StartFn) -> None:
        """Past max_pending_bytes, a further scrape gets 503 Busy; /healthz still works."""
        runtime = start_runtime(
            cardinality={"max_series": 120_000},
            exporter=prometheus_config(
                max_pending_bytes=1_000_000,
                gzip=False,
                write_timeout="8s",
                scrape_timeout="60s",
            ),
        )
        wide_counter(runtime, 100_000)  # about 9 MB of text
        address = str(runtime.address)
        holder = hold_unread_scrape(address)
        try:
            busy = exchange(
                address,
                b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            assert status_of(busy) == 503
            assert b"retry-after: 1" in busy.lower()
            assert sample_value(runtime, "rejected_total", reason="busy") == 1
            healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            assert status_of(exchange(address, healthz)) == 200
        finally:
            holder.close()
