"""
Chaos: the demo is killed (SIGTERM) and restarted in a loop under steady scraping;
every exit must be preceded by /readyz 503, and every exit must be clean.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import demo_command
from ron_metrics.testing import reserved_port

CYCLES = 20


class _Poller:
    """Polls /readyz every 20 ms and scrapes /metrics at ~4 rps; records what it sees."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.events: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        last_scrape = 0.0
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                now = time.monotonic()
                try:
                    status = client.get(f"{self.base}/readyz").status_code
                    self.events.append((now, str(status)))
                    if now - last_scrape > 0.25:
                        last_scrape = now
                        client.get(f"{self.base}/metrics")
                except httpx.HTTPError:
                    self.events.append((now, "down"))
                time.sleep(0.02)

    def __enter__(self) -> _Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _launch(config: Path) -> subprocess.Popen[bytes]:
    argv, env = demo_command(str(config))
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


@pytest.mark.peer
def test_restart_loop_under_scrape(tmp_path: Path) -> None:
    """20 SIGTERM/restart cycles under scraping: each exit is clean and preceded by a 503."""
    port = reserved_port()
    config = tmp_path / "demo.toml"
    config.write_text(
        f'[exporter.prometheus]\nbind = "127.0.0.1:{port}"\ndrain_delay = "300ms"\n'
    )
    base = f"http://127.0.0.1:{port}"
    exits: list[int] = []
    preceded_by_503: list[bool] = []
    with _Poller(base) as poller:
        for _ in range(CYCLES):
            process = _launch(config)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if poller.events and poller.events[-1][1] == "200":
                        break
                    time.sleep(0.02)
                else:
                    pytest.fail("the demo never became ready")
                killed_at = time.monotonic()
                process.send_signal(signal.SIGTERM)
                exits.append(process.wait(20))
                time.sleep(0.1)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(10)
            after = [status for at, status in list(poller.events) if at >= killed_at]
            first_down = after.index("down") if "down" in after else len(after)
            preceded_by_503.append("503" in after[:first_down])
    assert exits == [0] * CYCLES
    assert all(preceded_by_503), preceded_by_503
