"""
Signals under ``ron-metrics run``: SIGHUP reloads the config file, chains to the
program's own handler and never ends the program (a plain script, uvicorn,
gunicorn); SIGTERM of a program without a handler still delivers the final counts
and ends the program as the signal would.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import clean_env, stop_process
from ron_metrics.testing import reserved_port

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent

SCRIPT = """
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGHUP, lambda *_: marker.write_text("hup"))
while True:
    time.sleep(0.05)
"""


class Stderr:
    """The lines a process writes on stderr, read as they come."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        self._stream = process.stderr
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        READERS[process.pid] = self

    def _read(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed at teardown
            for raw in self._stream:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def close(self) -> None:
        self._thread.join(10)  # the process has ended: its pipe is at EOF
        self._stream.close()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                found.append(parsed)
        return found

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], within: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events():
                if check(event):
                    return event
            time.sleep(0.05)
        pytest.fail("no such log line:\n" + "\n".join(self.lines[-40:]))


def _config(path: Path, port: int, *, gzip: bool) -> Path:
    path.write_text(
        '[service]\nname = "signals"\n[exporter.prometheus]\n'
        f'bind = "127.0.0.1:{port}"\ngzip = {"true" if gzip else "false"}\n'
    )
    return path


def _encoding(port: int) -> str | None:
    response = httpx.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"accept-encoding": "gzip"},
        timeout=30,
    )
    assert response.status_code == 200
    encoding: str | None = response.headers.get("content-encoding")
    return encoding


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop_process(process)
        if process.stderr is not None:
            with contextlib.suppress(KeyError):
                READERS.pop(process.pid).close()


READERS: dict[int, Stderr] = {}


def _run(
    config: Path, program: list[str], started: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], Stderr]:
    process = subprocess.Popen(
        [str(BIN / "ron-metrics"), "run", "--config", str(config), "--", *program],
        cwd=TESTS,
        env=clean_env(PYTHONPATH=str(TESTS)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started.append(process)
    return process, Stderr(process)


def _reloaded(event: dict[str, Any]) -> bool:
    return event.get("event") == "sighup_reloaded" and (
        "exporter.prometheus.gzip" in event.get("changed", [])
    )


def test_sighup_reloads_and_chains_to_the_programs_handler(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """A script with its own SIGHUP handler: both run, the program lives on."""
    port = reserved_port()
    config = _config(tmp_path / "ron-metrics.toml", port, gzip=False)
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "hup"
    process, stderr = _run(config, [sys.executable, str(script), str(marker)], started)
    stderr.wait_for(lambda e: e.get("event") == "autostart")
    assert _encoding(port) is None
    _config(config, port, gzip=True)
    process.send_signal(signal.SIGHUP)
    stderr.wait_for(_reloaded)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "hup"  # the program's own handler ran too
    assert process.poll() is None
    assert _encoding(port) == "gzip"
    # SIGTERM, which the script leaves at its default: it still ends the program.
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == -signal.SIGTERM
    assert stderr.wait_for(lambda e: e.get("event") == "stopped")


def test_sighup_without_a_config_file_changes_nothing(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """No --config: SIGHUP is logged and ignored; the program (no handler) lives on."""
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.replace("signal.signal(", "0 and signal.signal("))
    process = subprocess.Popen(
        [str(BIN / "ron-metrics"), "run", "--", sys.executable, str(script), "x"],
        env=clean_env(RON_METRICS_SERVICE__NAME="signals"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started.append(process)
    stderr = Stderr(process)
    stderr.wait_for(lambda e: e.get("event") == "autostart")
    process.send_signal(signal.SIGHUP)
    stderr.wait_for(lambda e: e.get("event") == "sighup_ignored")
    assert process.poll() is None


SERVERS = {
    "uvicorn": (
        ["uvicorn", "--port", "{port}", "zero_code_app:fastapi_app"],
        "/items/1",
    ),
    "gunicorn": (
        [
            "gunicorn",
            "-w",
            "1",
            "--bind",
            "127.0.0.1:{port}",
            "zero_code_app:flask_app",
        ],
        "/users/1",
    ),
}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_sighup_reloads_a_server_that_keeps_serving(
    server: str, tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """uvicorn and gunicorn under the runner: SIGHUP reloads; the app still answers."""
    port, app_port = reserved_port(), reserved_port()
    config = _config(tmp_path / "ron-metrics.toml", port, gzip=False)
    argv, path = SERVERS[server]
    program = [str(BIN / argv[0]), *(a.format(port=app_port) for a in argv[1:])]
    process, stderr = _run(config, program, started)
    stderr.wait_for(lambda e: e.get("event") == "autostart")
    _wait_answer(f"http://127.0.0.1:{app_port}{path}")
    _config(config, port, gzip=True)
    process.send_signal(signal.SIGHUP)
    stderr.wait_for(_reloaded)
    if server == "gunicorn":
        # gunicorn's own SIGHUP handling (a graceful worker restart) ran too.
        deadline = time.monotonic() + 60
        while not any("Handling signal: hup" in line for line in stderr.lines):
            assert time.monotonic() < deadline, "\n".join(stderr.lines[-40:])
            time.sleep(0.05)
    assert process.poll() is None
    _wait_answer(f"http://127.0.0.1:{app_port}{path}")
    assert _encoding(port) == "gzip"


def _wait_answer(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            assert httpx.get(url, timeout=30).status_code == 200
            return
        except httpx.ConnectError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.05)


WAITER = """
import pathlib, sys, time
from opentelemetry import metrics
metrics.get_meter("job").create_counter("job.ticks").add(1)
marker = pathlib.Path(sys.argv[1])
while not marker.exists():
    time.sleep(0.05)
"""


def test_one_json_stream_across_start_outage_switch_and_exit(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Every stderr line, the OTel SDK's own included, is one JSON object."""
    dead = reserved_port()  # nothing listens there: every export fails
    config = tmp_path / "ron-metrics.toml"
    config.write_text(
        '[service]\nname = "stream"\n[exporter]\nkind = "otlp"\n'
        f'[exporter.otlp]\nendpoint = "http://127.0.0.1:{dead}"\n'
        'interval = "500ms"\ntimeout = "300ms"\n'
    )
    script = tmp_path / "job.py"
    script.write_text(WAITER)
    marker = tmp_path / "done"
    process, stderr = _run(config, [sys.executable, str(script), str(marker)], started)
    stderr.wait_for(lambda e: e.get("event") == "autostart")
    stderr.wait_for(lambda e: e.get("event") == "library_log")  # the SDK's own
    stderr.wait_for(lambda e: e.get("event") == "otlp_export_failed")
    config.write_text(
        '[service]\nname = "stream"\n[exporter]\nkind = "prometheus"\n'
        '[exporter.prometheus]\nbind = "127.0.0.1:0"\n'
    )
    process.send_signal(signal.SIGHUP)
    stderr.wait_for(lambda e: e.get("event") == "sighup_reloaded")
    marker.write_text("")
    assert process.wait(60) == 0
    stderr.wait_for(lambda e: e.get("event") == "stopped")
    READERS.pop(process.pid).close()
    for line in stderr.lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert {"ts", "level", "event"} <= set(parsed), line
