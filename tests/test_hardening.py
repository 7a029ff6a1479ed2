from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.metrics import CallbackOptions, Observation

from conftest import StartFn, prometheus_config, require
from ron_metrics import ConfigError, ExposerError
from ron_metrics.testing import sample_value
from wire import (
    closed_by_peer,
    connect,
    exchange,
    read_all,
    status_of,
    wait_for_response,
)

GET = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"


class TestMethodsOnTheWire:
    @pytest.mark.parametrize(
        "method",
        [
            b"HEAD",
            b"OPTIONS",
            b"TRACE",
            b"CONNECT",
            b"POST",
            b"PUT",
            b"DELETE",
            b"PATCH",
            b"BREW",
            b"M-SEARCH",
        ],
    )
    def test_every_other_method_is_405(
        self, start_runtime: StartFn, method: bytes
    ) -> None:
        """Raw requests with any non-GET method get 405 + Allow: GET, counted once."""
        runtime = start_runtime(exporter=prometheus_config())
        target = b"*" if method == b"OPTIONS" else b"/healthz"
        if method == b"CONNECT":
            target = b"127.0.0.1:1"
        response = exchange(
            str(runtime.address),
            method
            + b" "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert status_of(response) in {405, 404}
        if status_of(response) == 405:
            assert b"\r\nallow: GET\r\n" in response.lower().replace(
                b"allow: get", b"allow: GET"
            )
            assert sample_value(runtime, "rejected_total", reason="method") == 1
        else:  # '*' and authority-form targets are not a known path
            assert sample_value(runtime, "rejected_total", reason="path") == 1


BODY_SHAPES = [
    ("content-length", b"Content-Length: 5\r\n\r\nhello", 400, "body"),
    (
        "chunked",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        "body",
    ),
    (
        "cl-and-te",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "body",
    ),
    ("cl-list-mismatch", b"Content-Length: 5, 6\r\n\r\nhello", 400, "body"),
    (
        "cl-duplicated",
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        400,
        "body",
    ),
    ("cl-not-a-number", b"Content-Length: 5x\r\n\r\n", 400, "body"),
    ("huge-cl", b"Content-Length: 99999999999\r\n\r\n", 413, "oversize"),
    ("space-before-colon", b"Content-Length : 5\r\n\r\nhello", 400, "malformed"),
    ("obs-fold", b"X-A: 1\r\n folded\r\n\r\n", 400, "malformed"),
]


class TestBodiesAndSmuggling:
    @pytest.mark.parametrize(
        ("name", "tail", "status", "reason"),
        BODY_SHAPES,
        ids=[s[0] for s in BODY_SHAPES],
    )
    def test_body_shapes_rejected_once_and_closed(
        self, start_runtime: StartFn, name: str, tail: bytes, status: int, reason: str
    ) -> None:
        """Every body/smuggling shape gets its status with Connection: close, counted once."""
        runtime = start_runtime(exporter=prometheus_config())
        response = exchange(str(runtime.address), GET + tail)
        assert status_of(response) == status, response[:200]
        assert b"connection: close" in response.lower()
        assert b"cache-control: no-store" in response.lower()
        assert response.count(b"HTTP/1.1 ") == 1  # nothing after the head was served
        assert sample_value(runtime, "rejected_total", reason=reason) == 1

    def test_announced_body_is_never_awaited(self, start_runtime: StartFn) -> None:
        """A body announced but never sent is answered at once (the body is not read)."""
        # Were the body awaited, the answer would come only at the read timeout,
        # long after the reading below has given up.
        runtime = start_runtime(exporter=prometheus_config(read_timeout="300s"))
        with connect(str(runtime.address)) as sock:
            sock.sendall(GET + b"Content-Length: 1000\r\n\r\n")
            response = read_all(sock, 60)
        assert status_of(response) == 400
        assert sample_value(runtime, "io_timeouts_total", op="read") == 0

    def test_pipelined_smuggle_after_good_request(self, start_runtime: StartFn) -> None:
        """A second, pipelined request with a body is refused; the first is served."""
        runtime = start_runtime(exporter=prometheus_config())
        payload = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
        response = exchange(str(runtime.address), payload)
        assert response.startswith(b"HTTP/1.1 200")
        assert b"HTTP/1.1 400" in response
        assert sample_value(runtime, "rejected_total", reason="body") == 1


UPGRADE_SHAPES = [
    (
        "websocket",
        GET
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ),
    (
        "h2c",
        GET
        + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    ),
    (
        "prior-knowledge",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ),
    ("http2-version", b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n"),
]


class TestUpgrades:
    @pytest.mark.parametrize(
        ("name", "payload"), UPGRADE_SHAPES, ids=[s[0] for s in UPGRADE_SHAPES]
    )
    def test_never_101_never_http2(
        self, start_runtime: StartFn, name: str, payload: bytes
    ) -> None:
        """Upgrade shapes get an HTTP/1.1 400 (never 101, never HTTP/2 frames), counted."""
        runtime = start_runtime(exporter=prometheus_config())
        response = exchange(str(runtime.address), payload)
        assert response.startswith(b"HTTP/1.1 400"), response[:100]
        assert b" 101 " not in response
        assert sample_value(runtime, "rejected_total", reason="upgrade") == 1

    @pytest.mark.parametrize("flag", ["--http2", "--http2-prior-knowledge"])
    def test_curl_http2_gets_no_http2(self, start_runtime: StartFn, flag: str) -> None:
        """curl asking for HTTP/2 never gets an HTTP/2 session."""
        runtime = start_runtime(exporter=prometheus_config())
        result = subprocess.run(
            [
                require("curl"),
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                flag,
                "--max-time",
                "5",
                f"{runtime.address}/metrics",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        version, _, code = result.stdout.partition(" ")
        assert version != "2"
        assert result.returncode != 0 or code.startswith("4")


class TestHeaders:
    @pytest.mark.parametrize("writes", [1, 9])
    def test_oversize_headers_431_however_sent(
        self, start_runtime: StartFn, writes: int
    ) -> None:
        """9 KiB of headers gets 431 whether sent in one write or many."""
        runtime = start_runtime(exporter=prometheus_config())
        payload = (
            GET
            + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(9))
            + b"\r\n"
        )
        with connect(str(runtime.address)) as sock:
            step = len(payload) // writes + 1
            for index in range(0, len(payload), step):
                sock.sendall(payload[index : index + step])
                time.sleep(0.01)
            response = read_all(sock)
        assert status_of(response) == 431
        assert sample_value(runtime, "rejected_total", reason="headers") == 1

    def test_headers_under_the_bound_are_fine(self, start_runtime: StartFn) -> None:
        """7 KiB of headers is served normally."""
        runtime = start_runtime(exporter=prometheus_config())
        payload = (
            GET
            + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(7))
            + b"Connection: close\r\n\r\n"
        )
        assert status_of(exchange(str(runtime.address), payload)) == 200


class TestTimeouts:
    def test_slow_header_drip_is_cut_at_read_timeout(
        self, start_runtime: StartFn
    ) -> None:
        """A head that drips in slower than the read timeout is dropped and counted."""
        runtime = start_runtime(exporter=prometheus_config(read_timeout="500ms"))
        with connect(str(runtime.address)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            for _ in range(4):
                time.sleep(0.2)
                try:
                    sock.sendall(b"X-Drip: 1\r\n")
                except OSError:
                    break
            assert closed_by_peer(sock, 30)
        assert sample_value(runtime, "io_timeouts_total", op="read") == 1

    def test_idle_keepalive_closed_and_counted(self, start_runtime: StartFn) -> None:
        """An idle keep-alive connection is closed after idle_timeout, counted as idle."""
        runtime = start_runtime(exporter=prometheus_config(idle_timeout="700ms"))
        with connect(str(runtime.address)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            assert closed_by_peer(sock, 30)
        deadline = time.monotonic() + 60
        while (
            sample_value(runtime, "io_timeouts_total", op="idle") != 1
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert sample_value(runtime, "io_timeouts_total", op="idle") == 1

    @pytest.mark.timeout(600)  # heavy: 100k series; more than the suite's hang guard
    def test_client_that_stops_reading_is_dropped(self, start_runtime: StartFn) -> None:
        """A client that never reads a big response is dropped after write_timeout."""
        runtime = start_runtime(
            cardinality={"max_series": 120_000},
            # Rendering is not under test: a busy machine may take long for it.
            exporter=prometheus_config(
                write_timeout="300ms", gzip=False, scrape_timeout="60s"
            ),
        )
        counter = runtime.get_meter("app").create_counter("wide")
        # ~11 MB of text: more than loopback's kernel buffers absorb, so the server
        # really has to wait on a client that does not read.
        for index in range(100_000):
            counter.add(1, {"k": f"value-{index:06d}-" + "x" * 80})
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(str(runtime.address).rsplit(":", 1)[1])))
        try:
            sock.sendall(GET + b"\r\n")
            assert wait_for_response(sock)
            deadline = time.monotonic() + 60
            while (
                sample_value(runtime, "io_timeouts_total", op="write") != 1
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            assert sample_value(runtime, "io_timeouts_total", op="write") == 1
        finally:
            sock.close()
        assert httpx.get(f"{runtime.address}/healthz", timeout=5).status_code == 200


class TestLimits:
    def test_in_flight_cap_answers_busy(self, start_runtime: StartFn) -> None:
        """Beyond max_in_flight, requests get 503 Busy with Retry-After, counted."""
        runtime = start_runtime(exporter=prometheus_config(max_in_flight=2))
        gate = threading.Event()

        def slow(_options: CallbackOptions) -> list[Observation]:
            gate.wait(10)
            return []

        runtime.get_meter("app").create_observable_gauge("slow", callbacks=[slow])

        async def flood() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=20) as client:
                scrapes = [
                    asyncio.create_task(client.get(f"{runtime.address}/metrics"))
                    for _ in range(2)
                ]
                await asyncio.sleep(0.5)
                busy = await client.get(f"{runtime.address}/healthz")
                gate.set()
                return [busy, *await asyncio.gather(*scrapes)]

        busy, *scrapes = asyncio.run(flood())
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.text == "Busy\n"
        assert [r.status_code for r in scrapes] == [200, 200]
        assert sample_value(runtime, "rejected_total", reason="busy") == 1

    def test_connection_cap_closes_excess_and_recovers(
        self, start_runtime: StartFn
    ) -> None:
        """Connections beyond max_connections are closed at once; service resumes after."""
        runtime = start_runtime(exporter=prometheus_config(max_connections=4))
        held = [connect(str(runtime.address)) for _ in range(4)]
        try:
            time.sleep(0.2)
            with connect(str(runtime.address)) as extra:
                assert closed_by_peer(extra, 30)
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 60
        status = 0
        while status != 200 and time.monotonic() < deadline:
            try:
                status = httpx.get(f"{runtime.address}/healthz", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.05)
        assert status == 200
        # The slots came back (one may still be closing: the probe just above).
        again = [connect(str(runtime.address)) for _ in range(3)]
        try:
            for sock in again:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.settimeout(5)
                assert sock.recv(12) == b"HTTP/1.1 200"
        finally:
            for sock in again:
                sock.close()
        assert (sample_value(runtime, "rejected_total", reason="connections") or 0) >= 1


class TestBindSafety:
    def test_public_bind_needs_opt_in(self) -> None:
        """A non-loopback bind is a ConfigError unless allow_public_bind = true."""
        from ron_metrics.testing import config_for_tests

        with pytest.raises(ConfigError, match="allow_public_bind"):
            config_for_tests(exporter=prometheus_config(bind="0.0.0.0:0"))
        config = config_for_tests(
            exporter=prometheus_config(bind="0.0.0.0:0", allow_public_bind=True)
        )
        assert not config.exporter.prometheus.bind.is_loopback

    def test_symlinked_socket_directory_refused(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A socket directory that is a symlink is refused."""
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        link = tmp_path / "link"
        link.symlink_to(real)
        with pytest.raises(ExposerError, match="symlink"):
            start_runtime(exporter=prometheus_config(bind=f"unix:{link}/m.sock"))

    def test_open_socket_directory_refused(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A socket directory wider than 0700 is refused."""
        wide = tmp_path / "wide"
        wide.mkdir()
        wide.chmod(0o755)
        with pytest.raises(ExposerError, match="0700"):
            start_runtime(exporter=prometheus_config(bind=f"unix:{wide}/m.sock"))

    def test_symlink_at_socket_path_refused(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A symlink where the socket should be is refused, not followed or replaced."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        (run / "m.sock").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(ExposerError, match="symlink"):
            start_runtime(exporter=prometheus_config(bind=f"unix:{run}/m.sock"))

    def test_regular_file_at_socket_path_refused(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A regular file where the socket should be is never deleted."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        (run / "m.sock").write_text("precious")
        with pytest.raises(ExposerError, match="not a socket"):
            start_runtime(exporter=prometheus_config(bind=f"unix:{run}/m.sock"))
        assert (run / "m.sock").read_text() == "precious"

    def test_stale_socket_of_ours_is_replaced(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A stale socket we own is replaced by the new one."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(run / "m.sock"))
        stale.close()
        runtime = start_runtime(exporter=prometheus_config(bind=f"unix:{run}/m.sock"))
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(run / "m.sock")), timeout=5
        ) as client:
            assert client.get("http://ron/healthz").status_code == 200
        assert runtime.address == f"unix:{run}/m.sock"


class TestHypercornContract:
    def test_internals_we_wrap_keep_their_shape(self) -> None:
        """Fails when a hypercorn upgrade changes the internals the wire layer depends on."""
        import hypercorn
        from hypercorn.asyncio.lifespan import Lifespan
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.worker_context import WorkerContext
        from hypercorn.utils import wrap_app

        assert list(inspect.signature(TCPServer.__init__).parameters) == [
            "self",
            "app",
            "loop",
            "config",
            "context",
            "state",
            "reader",
            "writer",
        ]
        assert list(inspect.signature(Lifespan.__init__).parameters) == [
            "self",
            "app",
            "config",
            "loop",
            "lifespan_state",
        ]
        assert list(inspect.signature(WorkerContext.__init__).parameters) == [
            "self",
            "max_requests",
        ]
        assert list(inspect.signature(wrap_app).parameters) == [
            "app",
            "wsgi_max_body_size",
            "mode",
        ]
        source = inspect.getsource(TCPServer)
        for used in (
            "self.reader.at_eof()",
            "self.reader.read(",
            "self.writer.drain()",
            "self.writer.write_eof()",
            'get_extra_info("ssl_object")',
        ):
            assert used in source, used
        assert os.path.basename(os.path.dirname(hypercorn.__file__)) == "hypercorn"
