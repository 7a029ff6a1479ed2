"""
Bounded attack drills on loopback; figures go into docs/security.md.

    .venv/bin/python benchmarks/attacks.py            # full (about 2 minutes)
    .venv/bin/python benchmarks/attacks.py --smoke    # seconds

Each drill starts what it needs, is bounded in time and count, and stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
from common import percentile
from http_bench import _serve, _stop, parse_wrk

from ron_metrics import start
from ron_metrics.exporters.otlp import OtlpSink
from ron_metrics.testing import config_for_tests, samples

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def rss_mib(pid: int | str = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()

    def field(name: str) -> float:
        match = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else float("nan")

    return field("VmRSS"), field("VmHWM")


async def _drip(port: int, stop_at: float, closed: list[float], started: float) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        closed.append(0.0)
        return
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\n")
        await writer.drain()
        while time.monotonic() < stop_at:
            writer.write(b"X")
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.5) == b"":
                    break
            except TimeoutError:
                continue
    except (ConnectionError, OSError):
        pass
    finally:
        closed.append(time.monotonic() - started)
        writer.close()


def slowloris(connections: int, limit: float) -> dict[str, float]:
    process, port = _serve("ron", 1_000)
    try:
        closed: list[float] = []
        scrape_ms: list[float] = []
        stop = threading.Event()

        def scraper() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        client.get(f"http://127.0.0.1:{port}/metrics")
                        scrape_ms.append((time.perf_counter() - t) * 1000)
                    except httpx.HTTPError:
                        scrape_ms.append(float("inf"))
                    time.sleep(0.2)

        thread = threading.Thread(target=scraper)
        thread.start()
        started = time.monotonic()

        async def attack() -> None:
            await asyncio.gather(
                *[
                    _drip(port, started + limit, closed, started)
                    for _ in range(connections)
                ]
            )

        asyncio.run(attack())
        stop.set()
        thread.join(30)
        return {
            "connections": connections,
            "all_closed_s": max(closed),
            "median_closed_s": percentile(closed, 0.5),
            "scrape_p50_ms": percentile(scrape_ms, 0.5),
            "scrape_max_ms": max(scrape_ms),
            "scrapes": len(scrape_ms),
            "server_peak_rss_mib": rss_mib(process.pid)[1],
        }
    finally:
        _stop(process)


def flood(seconds: int, connections: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {}
    process, port = _serve("ron", 1_000)
    try:
        before = rss_mib(process.pid)[0]
        out = subprocess.run(
            [
                wrk,
                "-t",
                "2",
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--latency",
                "--timeout",
                "10s",
                f"http://127.0.0.1:{port}/metrics",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        ).stdout
        result = parse_wrk(out)
        result.update(
            rss_before_mib=before,
            server_peak_rss_mib=rss_mib(process.pid)[1],
            seconds=seconds,
            connections=connections,
        )
        return result
    finally:
        _stop(process)


def slow_readers(clients: int, series: int) -> dict[str, float]:
    """Clients that ask for /metrics and never read: server RSS against the body size."""
    process, port = _serve("ron", series)
    try:
        # Warm-up scrapes: a collection's own transient memory (the allocator keeps
        # it) is in the baseline, so the growth below is what the clients cost.
        for _ in range(3):
            body = httpx.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Accept-Encoding": "identity"},
                timeout=60,
            ).content
        settled = rss_mib(process.pid)[0]
        sockets = []
        peak = settled
        for _ in range(clients):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sockets.append(sock)
            peak = max(peak, rss_mib(process.pid)[0])
        deadline = time.monotonic() + 1.5  # inside the default 2 s write timeout
        while time.monotonic() < deadline:
            peak = max(peak, rss_mib(process.pid)[0])
            time.sleep(0.05)
        for sock in sockets:
            sock.close()
        time.sleep(1)
        return {
            "clients": clients,
            "body_mib": len(body) / 2**20,
            "rss_settled_mib": settled,
            "rss_peak_mib": peak,
            "growth_mib": peak - settled,
            "growth_x_body": (peak - settled) / (len(body) / 2**20),
            "rss_after_mib": rss_mib(process.pid)[0],
        }
    finally:
        _stop(process)


def _fresh_healthz(port: int) -> bool:
    # A raw socket: the figure is the server's, not an HTTP client's set-up time.
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.1 200")


def send_and_close(clients: int, fresh: int = 100) -> dict[str, float]:
    """
    Clients that send ``GET /healthz`` and close at once; then fresh connections.

    Before slots were tied to the socket, each such client held a connection slot
    until a timer ended (seconds), so a burst like this locked the exposer out.
    Clients that closed before being served now hold no slot and wait behind live
    ones, so a fresh client is not kept waiting while the burst is worked off.
    """
    process, port = _serve("ron", 1_000)
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        started = time.perf_counter()
        for _ in range(clients):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(request)
        attacker_s = time.perf_counter() - started
        first_ms = float("nan")
        answered = 0
        for _ in range(fresh):
            try:
                ok = _fresh_healthz(port)
            except OSError:
                continue
            if ok:
                answered += 1
                if answered == 1:
                    first_ms = (time.perf_counter() - started - attacker_s) * 1000
        return {
            "clients": clients,
            "attacker_s": attacker_s,
            "first_answer_ms": first_ms,
            "fresh": fresh,
            "answered": answered,
        }
    finally:
        _stop(process)


def closing_readers(series: int) -> dict[str, float]:
    """
    A cap of 4 held by clients stuck mid-way through a big scrape; they close.

    Every timer is set far beyond the drill, so a slot can only come back because
    its client closed: the figure is how soon a fresh client is served after that.
    """
    process, port = _serve("ron-cap4", series)
    try:
        holders = []
        for _ in range(4):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(60)
            sock.recv(1)  # the answer has started: the writer is now stuck
            holders.append(sock)
        time.sleep(0.5)
        refused_while_held = 0
        try:
            _fresh_healthz(port)
        except OSError:
            refused_while_held = 1
        for sock in holders:
            sock.close()
        closed = time.perf_counter()
        back_ms = float("nan")  # not back within 30 s
        while time.perf_counter() - closed < 30:
            try:
                if _fresh_healthz(port):
                    back_ms = (time.perf_counter() - closed) * 1000
                    break
            except OSError:
                time.sleep(0.005)
        return {
            "series": series,
            "refused_while_held": refused_while_held,
            "slot_back_ms": back_ms,
        }
    finally:
        _stop(process)


def cardinality_bomb(values: int) -> dict[str, float]:
    runtime = start(config_for_tests(exporter={"kind": "prometheus"}), set_global=False)
    try:
        counter = runtime.get_meter("bomb").create_counter("bomb")
        rss_before = rss_mib()[0]
        started = time.perf_counter()
        for i in range(values):
            counter.add(1, {"user_id": f"u{i}"})
        elapsed = time.perf_counter() - started
        rows = [
            labels
            for (name, labels), _ in samples(runtime).items()
            if name == "bomb_total"
        ]
        total = sum(
            v for (name, _), v in samples(runtime).items() if name == "bomb_total"
        )
        return {
            "values": values,
            "series": len(rows),
            "sum": total,
            "seconds": elapsed,
            "rss_growth_mib": rss_mib()[0] - rss_before,
            "ns_per_add": elapsed / values * 1e9,
        }
    finally:
        runtime.shutdown()


def collector_down(seconds: float) -> dict[str, float]:
    runtime = start(
        config_for_tests(
            exporter={
                "kind": "otlp",
                "otlp": {
                    "endpoint": "http://127.0.0.1:9",
                    "interval": "1s",
                    "timeout": "900ms",
                },
            }
        ),
        set_global=False,
    )
    try:
        counter = runtime.get_meter("app").create_counter("steady")
        rss_before = rss_mib()[0]
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t = time.perf_counter_ns()
            counter.add(1, {"route": "/x"})
            latencies.append((time.perf_counter_ns() - t) / 1000)
            time.sleep(0.0005)
        sink = cast("OtlpSink | None", runtime._engine.sink("otlp"))
        return {
            "seconds": seconds,
            "adds": len(latencies),
            "p50_us": percentile(latencies, 0.5),
            "p99_us": percentile(latencies, 0.99),
            "max_us": max(latencies),
            "rss_growth_mib": rss_mib()[0] - rss_before,
            "failed_exports": float(sink.exports_failed if sink else 0),
            "ready": float(runtime.readiness().ready),
        }
    finally:
        runtime.shutdown(timeout=3)


def render(results: dict[str, Any], command: str) -> str:
    sc = results["send_close"]
    s, f, b, c, r, one = (
        results["slowloris"],
        results["flood"],
        results["bomb"],
        results["down"],
        results["readers"],
        results["reader"],
    )
    lines = [
        START,
        "",
        f"Measured with `{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}, "
        "loopback, 2 CPUs; each drill stops by itself.",
        "",
    ]
    lines.append(
        f"- **Slowloris**: {s['connections']} connections dripping one header byte every 0.5 s. "
        f"All were closed by {s['all_closed_s']:.1f} s (median {s['median_closed_s']:.1f} s; read timeout 2 s). "
        f"Meanwhile {s['scrapes']} fresh `/metrics` scrapes answered in {s['scrape_p50_ms']:.1f} ms median, "
        f"{s['scrape_max_ms']:.1f} ms worst; server peak RSS {s['server_peak_rss_mib']:.0f} MiB."
    )
    if f:
        lines.append(
            f"- **Flood**: wrk, {f['connections']} connections for {f['seconds']} s on `/metrics` (1k series): "
            f"{f.get('requests', 0):,.0f} requests, {f.get('rps', 0):,.0f} req/s, {int(f.get('non_2xx', 0)):,} non-2xx "
            f"(a 503 `Busy` answers anything past `max_in_flight`), p99 {f.get('p99_ms', float('nan')):.1f} ms; server RSS "
            f"{f['rss_before_mib']:.0f} MiB before, peak {f['server_peak_rss_mib']:.0f} MiB."
        )
    else:
        lines.append("- **Flood**: wrk is not installed; not measured.")
    lines.append(
        f"- **Cardinality bomb**: {b['values']:,} distinct `user_id` values on one counter (default "
        f"`max_series = 2000`): {b['series']:,} series exported (2,000 + the overflow series), "
        f"sum {b['sum']:,.0f} (no increment lost), RSS growth {b['rss_growth_mib']:.1f} MiB, "
        f"{b['ns_per_add']:,.0f} ns per add."
    )
    lines.append(
        f"- **Collector down** for {c['seconds']:.0f} s (OTLP every 1 s to a closed port): "
        f"{c['adds']:,} adds, p50 {c['p50_us']:.1f} µs, p99 {c['p99_us']:.1f} µs, max {c['max_us']:.0f} µs; "
        f"RSS growth {c['rss_growth_mib']:.1f} MiB; {c['failed_exports']:.0f} failed exports; "
        f"ready={'yes' if c['ready'] else 'no (otlp_export_failing)'}."
    )
    lines.append(
        f"- **Clients that never read**: {r['clients']} connections ask for a "
        f"{r['body_mib']:.1f} MiB `/metrics` body (no gzip) and never read it. Server RSS "
        f"{r['rss_settled_mib']:.0f} MiB after a warm-up scrape, peak "
        f"{r['rss_peak_mib']:.0f} MiB: growth {r['growth_mib']:.1f} MiB = "
        f"{r['growth_x_body']:.2f}× the body, against {one['growth_mib']:.1f} MiB "
        f"({one['growth_x_body']:.2f}×) for a single such client — so the clients "
        f"themselves cost {r['growth_mib'] - one['growth_mib']:+.1f} MiB "
        f"({(r['growth_mib'] - one['growth_mib']) / r['body_mib']:+.2f}× the body): the "
        "body is shared and written in 64 KiB slices, and past `max_pending_bytes` a "
        "scrape gets 503 `Busy` before it collects. The rest is one collection's own "
        f"transient memory. {r['rss_after_mib']:.0f} MiB after they left."
    )
    lines.append(
        f"- **Send and close**: {sc['clients']} clients send `GET /healthz` and close at once "
        f"({sc['attacker_s']:.2f} s of attacker time, one after another). The first fresh "
        f"`/healthz` after them was answered {sc['first_answer_ms']:.0f} ms after the last one "
        f"closed, and {sc['answered']} of {sc['fresh']} fresh connections in a row were "
        "answered (raw sockets, so the figure is the server's): a connection's slot is "
        "freed when its peer closes, not by a timer, and clients that closed before "
        "being served hold no slot and wait behind live ones."
    )
    cr = results["closing_readers"]
    lines.append(
        "- **Stuck readers that close**: a cap of 4 connections held by clients stuck "
        f"part-way through a {cr['series']:,}-series `/metrics` (every timer at 300 s); "
        + (
            "a fresh client probed while they held it was refused; "
            if cr["refused_while_held"]
            else "a fresh client probed while they held it was served (a slot was free); "
        )
        + f"once they closed, a fresh `/healthz` was answered {cr['slot_back_ms']:.0f} ms later."
    )
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "security.md")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    command = "python benchmarks/attacks.py" + (" --smoke" if args.smoke else "")
    smoke = args.smoke
    results = {
        "slowloris": slowloris(30 if smoke else 300, 3 if smoke else 8),
        "send_close": send_and_close(60 if smoke else 600),
        "closing_readers": closing_readers(20_000 if smoke else 100_000),
        "flood": flood(1 if smoke else 10, 256),
        "bomb": cardinality_bomb(20_000 if smoke else 1_000_000),
        "down": collector_down(2 if smoke else 60),
        "readers": slow_readers(32 if smoke else 256, 20_000 if smoke else 260_000),
        "reader": slow_readers(1, 20_000 if smoke else 260_000),
    }
    section = render(results, command)
    text = args.out.read_text() if args.out.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## Figures under attack\n\n" + section + "\n"
    args.out.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
