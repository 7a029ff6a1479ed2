"""
HTTP on loopback with wrk: req/s and latency percentiles per server, path and concurrency.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import free_port

HERE = Path(__file__).parent


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def parse_wrk(output: str) -> dict[str, float]:
    result: dict[str, float] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE):
            result[f"p{pct}_ms"] = _ms(match.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    if match := re.search(r"(\d+) requests in", output):
        result["requests"] = float(match.group(1))
    return result


def _serve(kind: str, series: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), kind, str(port), str(series)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError(f"{kind} server did not start")
    time.sleep(0.3)
    return process, port


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


def measure(
    duration: int, connections: list[int], series: int, step: Any
) -> dict[str, Any]:
    """{server: {path: {connections: wrk figures}}}; empty when wrk is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {}
    plan = {
        "ron": ["/healthz", "/metrics"],
        "prometheus-client": ["/metrics"],
        "naive-quart": ["/healthz", "/metrics"],
    }
    results: dict[str, Any] = {}
    for kind, paths in plan.items():
        process, port = _serve(kind, series)
        try:
            for path in paths:
                for conns in connections:
                    step(f"wrk {kind} {path} c{conns}")
                    out = subprocess.run(
                        [
                            wrk,
                            "-t",
                            str(min(2, conns)),
                            "-c",
                            str(conns),
                            "-d",
                            f"{duration}s",
                            "--latency",
                            "--timeout",
                            "10s",
                            f"http://127.0.0.1:{port}{path}",
                        ],
                        capture_output=True,
                        text=True,
                        timeout=duration + 60,
                    ).stdout
                    results.setdefault(kind, {}).setdefault(path, {})[conns] = (
                        parse_wrk(out)
                    )
        finally:
            _stop(process)
    return results
