"""
``ron-metrics run -- COMMAND``: ron-metrics inside a program that has no code for it,
over real servers (uvicorn, gunicorn with ``--preload`` and forked workers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import clean_env, stop_process
from ron_metrics.testing import reserved_port

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def _wait(url: str, seconds: float = 60) -> None:
    """One request to ``url`` once it listens: the request is made exactly once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            # Only a refused connection is retried: a request the server has
            # seen must not be sent twice (the app would count it twice).
            httpx.get(url, timeout=seconds)
        except httpx.ConnectError:
            time.sleep(0.05)
            continue
        return
    pytest.fail(f"{url} did not answer")


def _metrics(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text


def _config(tmp_path: Path, port: int, group: bool = False) -> Path:
    text = (
        f'[service]\nname = "zero"\n[exporter.prometheus]\nbind = "127.0.0.1:{port}"\n'
    )
    if group:
        text += f'[multiprocess]\ndir = "{tmp_path / "group"}"\n'
    path = tmp_path / "ron-metrics.toml"
    path.write_text(text)
    return path


def _run(args: list[str], config: Path | None, *server: str) -> subprocess.Popen[bytes]:
    command = [str(BIN / "ron-metrics"), "run"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.Popen(
        [*command, *args, "--", *server],
        cwd=TESTS,
        env=clean_env(PYTHONPATH=str(TESTS)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop_process(process)


def test_fastapi_under_uvicorn_gets_metrics_and_route_templates(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """The app's own counter works and the middleware records the route template."""
    port, app_port = reserved_port(), reserved_port()
    server = [
        str(BIN / "uvicorn"),
        "--port",
        str(app_port),
        "zero_code_app:fastapi_app",
    ]
    started.append(_run([], _config(tmp_path, port), *server))
    _wait(f"http://127.0.0.1:{app_port}/items/1")
    for item in (2, 3):
        httpx.get(f"http://127.0.0.1:{app_port}/items/{item}", timeout=5)
    body = _metrics(port)
    assert "zero_code_jobs_total 3.0" in body
    counts = [
        line
        for line in body.splitlines()
        if line.startswith("http_server_request_duration_seconds_count{")
    ]
    assert counts == [
        line for line in counts if 'http_route="/items/{item_id}"' in line
    ]
    assert counts and counts[0].endswith(" 3.0")
    assert "/items/2" not in body


def test_flask_under_gunicorn_preload_with_workers(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """gunicorn --preload -w 2 under the runner: the group serves every worker's counts."""
    port, app_port = reserved_port(), reserved_port()
    server = [
        str(BIN / "gunicorn"),
        "--preload",
        "-w",
        "2",
        "--bind",
        f"127.0.0.1:{app_port}",
        "zero_code_app:flask_app",
    ]
    started.append(_run([], _config(tmp_path, port, group=True), *server))
    _wait(f"http://127.0.0.1:{app_port}/users/0")
    for user in range(1, 21):
        httpx.get(f"http://127.0.0.1:{app_port}/users/{user}", timeout=5)
    body = _metrics(port)
    assert "zero_code_jobs_total 21.0" in body
    assert re.search(
        r'http_server_request_duration_seconds_count\{[^}]*http_route="/users/<int:user_id>"[^}]*\} 21\.0',
        body,
    ), body


def test_no_middleware_leaves_the_app_alone(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """--no-middleware: the runtime runs, no HTTP server metrics are added."""
    port, app_port = reserved_port(), reserved_port()
    server = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{app_port}",
        "zero_code_app:flask_app",
    ]
    config = _config(tmp_path, port, group=True)  # the worker's counts reach the port
    started.append(_run(["--no-middleware"], config, *server))
    _wait(f"http://127.0.0.1:{app_port}/users/1")
    body = _metrics(port)
    assert "zero_code_jobs_total 1.0" in body  # the runtime runs in the worker
    assert "http_server_request_duration" not in body


def test_a_bad_config_stops_before_the_program(tmp_path: Path) -> None:
    """An invalid config exits 2 with the problem; the program never starts."""
    config = tmp_path / "bad.toml"
    config.write_text('[service]\nname = "x"\n[exporter]\nkind = "carrier-pigeon"\n')
    marker = tmp_path / "ran"
    result = subprocess.run(
        [
            str(BIN / "ron-metrics"),
            "run",
            "--config",
            str(config),
            "--",
            sys.executable,
            "-c",
            f"open({str(marker)!r}, 'w').close()",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
    )
    assert result.returncode == 2
    assert "exporter.kind" in result.stderr
    assert not marker.exists()


def test_python_program_sees_the_global_provider(tmp_path: Path) -> None:
    """A plain script under the runner gets the SDK MeterProvider as the OTel global."""
    port = reserved_port()
    code = (
        "from opentelemetry import metrics\n"
        "print(type(metrics.get_meter_provider()).__name__)\n"
    )
    result = subprocess.run(
        [
            str(BIN / "ron-metrics"),
            "run",
            "--config",
            str(_config(tmp_path, port)),
            "--",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ForkSafeMeterProvider"
    events = [json.loads(line) for line in result.stderr.splitlines()]
    autostart = [e for e in events if e["event"] == "autostart"]
    assert len(autostart) == 1 and {"ts", "level", "pid"} <= set(autostart[0])
    assert os.path.exists(tmp_path / "ron-metrics.toml")
