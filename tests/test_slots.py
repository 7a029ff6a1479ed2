"""
A connection's slot is freed when its connection is gone, and the wire counters
count what they name.

Timeouts here are set far beyond each test's own waiting, so a slot that came back
can only have come back because its peer closed, half-closed or reset — never
because a timer ran out.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import StartFn, demo_command, prometheus_config, stop_process
from ron_metrics import Runtime
from ron_metrics.testing import sample_value
from test_tls import client_context, tls_exporter
from tls_material import Pki, make_pki
from wire import port_of, read_all, status_of, wait_for_response

FAR = "300s"  # no timer fires while a test waits
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
HEALTHZ_CLOSE = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def far_timeouts(**extra: Any) -> dict[str, Any]:
    return prometheus_config(
        read_timeout=FAR, write_timeout=FAR, idle_timeout=FAR, **extra
    )


def wire_counters(runtime: Runtime) -> dict[str, float | None]:
    counters: dict[str, float | None] = {
        op: sample_value(runtime, "io_timeouts_total", op=op)
        for op in ("read", "write", "idle")
    }
    counters["refused"] = sample_value(runtime, "rejected_total", reason="connections")
    return counters


def all_slots_free(
    runtime: Runtime, cap: int, within: float = 30, tls: ssl.SSLContext | None = None
) -> bool:
    """``cap`` keep-alive connections held at once are all served."""
    deadline = time.monotonic() + within
    port = port_of(str(runtime.address))

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        if tls is None:
            return sock
        try:
            return tls.wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, OSError):
            sock.close()
            return socket.socket()  # a socket that answers nothing

    while time.monotonic() < deadline:
        held = [connect() for _ in range(cap)]
        try:
            statuses = []
            for sock in held:
                sock.settimeout(5)
                try:
                    sock.sendall(HEALTHZ)
                    statuses.append(status_of(sock.recv(4096)))
                except OSError:  # refused: that slot was not free yet
                    statuses.append(0)
        finally:
            for sock in held:
                sock.close()
        if statuses == [200] * cap:
            return True
        time.sleep(0.05)
    return False


def test_send_and_close_clients_leave_no_slot_behind(start_runtime: StartFn) -> None:
    """600 clients send GET /healthz and close at once: every slot comes back."""
    cap = 64
    runtime = start_runtime(exporter=far_timeouts(max_connections=cap))
    port = port_of(str(runtime.address))
    for _ in range(600):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(HEALTHZ)
    assert all_slots_free(runtime, cap)
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (0, 0, 0)


@pytest.mark.timeout(600)  # heavy: 100k series; more than the suite's hang guard
def test_non_reading_clients_free_their_slots_when_they_close(
    start_runtime: StartFn,
) -> None:
    """A cap of 4 held by clients not reading big scrapes: back once they close."""
    runtime = start_runtime(
        cardinality={"max_series": 120_000},
        exporter=far_timeouts(max_connections=4, gzip=False, scrape_timeout="60s"),
    )
    counter = runtime.get_meter("app").create_counter("wide")
    for index in range(100_000):
        counter.add(1, {"k": f"value-{index:06d}-" + "x" * 60})
    port = port_of(str(runtime.address))
    holders = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        holders.append(sock)
    for sock in holders:
        assert wait_for_response(sock)  # each is now stuck mid-body
    for sock in holders:
        sock.close()
    assert all_slots_free(runtime, 4)
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (0, 0, 0)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def behave(port: int, behaviour: str) -> None:
    """One client doing ``behaviour`` against the exposer, then gone."""
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        if behaviour == "read all":
            sock.sendall(HEALTHZ_CLOSE)
            assert status_of(read_all(sock, 30)) == 200
        elif behaviour == "keep-alive then close":
            sock.sendall(HEALTHZ)
            sock.settimeout(30)
            assert status_of(sock.recv(4096)) == 200
        elif behaviour == "read some then close":
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.settimeout(30)
            sock.recv(10)
        elif behaviour == "never read":
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        elif behaviour == "half-close":
            sock.sendall(HEALTHZ)
            sock.shutdown(socket.SHUT_WR)
            assert status_of(read_all(sock, 30)) == 200
        elif behaviour == "reset":
            sock.sendall(HEALTHZ)
            _reset(sock)
        elif behaviour == "pipeline then close":
            sock.sendall(HEALTHZ * 3)
        elif behaviour == "silent then close":
            pass
    finally:
        sock.close()


BEHAVIOURS = [
    "read all",
    "keep-alive then close",
    "read some then close",
    "never read",
    "half-close",
    "reset",
    "pipeline then close",
    "silent then close",
]


@settings(max_examples=15)
@given(st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=12))
def test_counters_count_only_what_happened(behaviours: list[str]) -> None:
    """Random clients that all end by leaving: no timeout, no refusal, no slot kept."""
    from ron_metrics import start
    from ron_metrics.testing import config_for_tests

    cap = 16
    config = config_for_tests(exporter=far_timeouts(max_connections=cap))
    with start(config, set_global=False) as runtime:
        port = port_of(str(runtime.address))
        for behaviour in behaviours:
            behave(port, behaviour)
        # Fewer clients than the cap, one after the other: none may be refused.
        after_clients = wire_counters(runtime)
        assert all_slots_free(runtime, cap)
        assert after_clients == {"read": 0, "write": 0, "idle": 0, "refused": 0}
        counters = wire_counters(runtime)
        assert (counters["read"], counters["write"], counters["idle"]) == (0, 0, 0)


@pytest.mark.timeout(600)  # heavy: 100k series; more than the suite's hang guard
def test_a_client_that_stops_reading_is_one_write_timeout(
    start_runtime: StartFn,
) -> None:
    """A stalled write is counted once per connection, as a write timeout only."""
    runtime = start_runtime(
        cardinality={"max_series": 120_000},
        exporter=prometheus_config(
            write_timeout="300ms", read_timeout=FAR, idle_timeout=FAR, gzip=False,
            scrape_timeout="60s",
        ),
    )  # fmt: skip
    counter = runtime.get_meter("app").create_counter("wide")
    for index in range(100_000):
        counter.add(1, {"k": f"value-{index:06d}-" + "x" * 60})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port_of(str(runtime.address))))
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_for_response(sock)
        deadline = time.monotonic() + 60
        while sample_value(runtime, "io_timeouts_total", op="write") == 0:
            assert time.monotonic() < deadline, "the stalled write was not cut"
            time.sleep(0.05)
    finally:
        sock.close()
    assert all_slots_free(runtime, 4)
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (0, 1, 0)


def test_a_silent_connection_is_one_read_timeout(start_runtime: StartFn) -> None:
    """Connected and silent past the read timeout: one read timeout, nothing else."""
    runtime = start_runtime(
        exporter=prometheus_config(read_timeout="300ms", write_timeout=FAR)
    )
    with socket.create_connection(("127.0.0.1", port_of(str(runtime.address)))) as s:
        s.settimeout(60)
        assert s.recv(1) == b""  # closed by the server at the read timeout
    httpx.get(f"{runtime.address}/healthz", timeout=30)
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (1, 0, 0)


@pytest.fixture(name="pki", scope="module")
def _pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_silent_tls_connection_is_one_read_timeout(
    start_runtime: StartFn, pki: Pki
) -> None:
    """On the TLS port too: one read timeout, no write timeout, the slot back."""
    runtime = start_runtime(
        exporter=tls_exporter(
            pki, read_timeout="300ms", write_timeout=FAR, max_connections=2
        )
    )
    with socket.create_connection(("127.0.0.1", port_of(str(runtime.address)))) as s:
        s.settimeout(60)
        assert s.recv(1) == b""
    context = client_context(pki)
    for _ in range(2):  # both slots serve a TLS client
        with (
            socket.create_connection(
                ("127.0.0.1", port_of(str(runtime.address)))
            ) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(HEALTHZ_CLOSE)
            tls.settimeout(30)
            assert status_of(tls.recv(4096)) == 200
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (1, 0, 0)


def test_a_tls_client_that_closes_frees_its_slot(
    start_runtime: StartFn, pki: Pki
) -> None:
    """A TLS keep-alive client served and gone: its slot serves the next one."""
    runtime = start_runtime(exporter=tls_exporter(pki, max_connections=1, read_timeout=FAR, write_timeout=FAR, idle_timeout=FAR))  # fmt: skip
    context = client_context(pki)
    for _ in range(5):  # each one needs the slot its predecessor held
        assert all_slots_free(runtime, 1, tls=context)
    counters = wire_counters(runtime)
    assert (counters["read"], counters["write"], counters["idle"]) == (0, 0, 0)


@contextmanager
def stopped_exposer(
    tmp_path: Path, cap: int
) -> Iterator[tuple[int, Callable[[], None]]]:
    """
    An exposer in its own process (the demo) with a cap of ``cap``; yields its port
    and a ``resume`` function. The process is stopped (SIGSTOP) until resumed, so
    every client that connects meanwhile waits in the kernel's accept queue.
    """
    config = tmp_path / "slots.toml"
    config.write_text(
        "[exporter.prometheus]\n"
        'bind = "127.0.0.1:0"\n'
        f"max_connections = {cap}\n"
        f'read_timeout = "{FAR}"\nwrite_timeout = "{FAR}"\nidle_timeout = "{FAR}"\n'
    )
    argv, env = demo_command(str(config), tick="1")
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=sink, env=env
        )
    try:
        port = listening_port(log, process)
        process.send_signal(signal.SIGSTOP)
        yield port, lambda: process.send_signal(signal.SIGCONT)
    finally:
        process.send_signal(signal.SIGCONT)
        stop_process(process)


def listening_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if '"event":"listening"' in line:
                return port_of(str(json.loads(line)["address"]))
        time.sleep(0.05)
    pytest.fail(f"the demo never logged its listening line: {log.read_text()[-2000:]}")


def test_clients_that_closed_before_being_served_never_refuse_a_live_one(
    tmp_path: Path,
) -> None:
    """100 clients send and close while the exposer is stopped; a cap of 4 still serves a live one."""
    with stopped_exposer(tmp_path, cap=4) as (port, resume):
        # 100: within the smallest accept queue a kernel still defaults to (128).
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(HEALTHZ)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as live:
            live.sendall(HEALTHZ_CLOSE)
            resume()
            # All 101 are accepted at once; the 100 whose peers are gone hold no
            # slot, so the live client is served, not reset.
            assert status_of(read_all(live, 30)) == 200


def half_closed_statuses(
    port: int, clients: int, resume: Callable[[], None]
) -> list[int]:
    """``clients`` send GET /healthz and half-close; then the exposer resumes: each status."""
    held = []
    try:
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(sock)
            sock.sendall(HEALTHZ)
            sock.shutdown(socket.SHUT_WR)
        resume()
        return [status_of(read_all(sock, 30)) for sock in held]
    finally:
        for sock in held:
            sock.close()


def test_half_closed_clients_are_still_answered(tmp_path: Path) -> None:
    """Clients that send and half-close while the exposer is stopped each get their answer."""
    with stopped_exposer(tmp_path, cap=64) as (port, resume):
        statuses = half_closed_statuses(port, 20, resume)
    assert statuses == [200] * 20


def test_clients_that_closed_before_being_served_are_capped_too(tmp_path: Path) -> None:
    """Waiting clients whose peers are gone are bounded by the cap: the rest are refused and counted."""
    cap, clients = 4, 50
    with stopped_exposer(tmp_path, cap=cap) as (port, resume):
        answered = half_closed_statuses(port, clients, resume).count(200)
        # All 50 are accepted in one go while the first few are still being served.
        assert cap <= answered < clients
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        refused = f'rejected_total{{reason="connections"}} {clients - answered}'
        assert refused in body
