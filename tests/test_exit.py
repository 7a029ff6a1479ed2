"""
Exit delivers: a process that counted and exits — under ``ron-metrics run``, or
after ``ron_metrics.start()`` without ``shutdown()`` — sends its final counts to a
real collector (rotel), over gRPC and HTTP, cumulative and delta, and writes
nothing on stderr but JSON lines.

The export interval is far longer than the job, so only the exit's flush can
deliver. Twenty jobs run side by side per case, each counting under its own
``run`` attribute, so one collector checks all of them.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector import Rotel
from conftest import clean_env, stop_process
from ron_metrics.testing import reserved_port

BIN = Path(sys.executable).parent
RUNS = 20
ADDED = 7

# Under the runner: a whole program, started by the runner and exiting on its own.
JOB = f"""
import sys
from opentelemetry import metrics
metrics.get_meter("job").create_counter("exit.jobs").add({ADDED}, {{"run": sys.argv[1]}})
"""
# start() without shutdown(): each job is a child forked from one parent that has
# imported everything once (twenty interpreter start-ups cost more than the test).
JOBS = f"""
import os, sys
from opentelemetry import metrics
import ron_metrics
case, runs = sys.argv[1], int(sys.argv[2])
children = []
for index in range(runs):
    pid = os.fork()
    if pid == 0:  # one job: start, count, exit with no shutdown()
        ron_metrics.start(ron_metrics.load_config())
        counter = metrics.get_meter("job").create_counter("exit.jobs")
        counter.add({ADDED}, {{"run": f"{{case}}-{{index}}"}})
        sys.exit(0)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
sys.exit(0 if codes == [0] * runs else 1)
"""


@pytest.fixture(name="rotel", scope="module")
def _rotel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotel]:
    collector = Rotel(tmp_path_factory.mktemp("rotel"))
    collector.start()
    yield collector
    collector.stop()


def _env(rotel: Rotel, protocol: str, temporality: str) -> dict[str, str]:
    endpoint = (
        rotel.grpc_endpoint
        if protocol == "grpc"
        else rotel.http_endpoint.removesuffix("/v1/metrics")
    )
    return clean_env(
        OTEL_SERVICE_NAME="exit-job",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=temporality,
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # only the exit can deliver
        OTEL_EXPORTER_OTLP_TIMEOUT="30000",  # a busy machine's export is slow
    )


def _commands(how: str, tmp_path: Path, case: str) -> list[list[str]]:
    script = tmp_path / "job.py"
    if how == "start":
        script.write_text(JOBS)
        return [[sys.executable, str(script), case, str(RUNS)]]
    script.write_text(JOB)
    runner = [str(BIN / "ron-metrics"), "run", "--", sys.executable, str(script)]
    return [[*runner, f"{case}-{index}"] for index in range(RUNS)]


def assert_json_lines(stderr: str) -> None:
    for line in stderr.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\n{stderr}")
        assert {"ts", "level", "event"} <= set(parsed), line


@pytest.mark.peer
@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("how", ["runner", "start"])
def test_final_counts_arrive_at_exit(
    how: str, protocol: str, temporality: str, rotel: Rotel, tmp_path: Path
) -> None:
    """Twenty short jobs per case: every one's count reaches the collector, once."""
    case = f"{how}-{protocol}-{temporality}"
    env = _env(rotel, protocol, temporality)
    jobs = [
        subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in _commands(how, tmp_path, case)
    ]
    for job in jobs:
        _, stderr = job.communicate(timeout=120)
        assert job.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        assert_json_lines(stderr)
    runs = {f"{case}-{index}" for index in range(RUNS)}
    # Every export was acknowledged before its job exited; the collector's log
    # may trail a little behind.
    deadline = time.monotonic() + 60
    while True:
        points = [
            point
            for point in rotel.points()
            if point.metric == "exit.jobs" and point.attributes.get("run") in runs
        ]
        if {p.attributes["run"] for p in points} == runs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_run = {run: [p for p in points if p.attributes["run"] == run] for run in runs}
    # The start-up export may already carry the count (the job counts at once):
    # then cumulative repeats it, and delta adds a zero. Never more, never less.
    if temporality == "cumulative":
        delivered = {
            run: max(p.value or 0 for p in found) for run, found in by_run.items()
        }
        assert all(p.value == ADDED for p in points), points
    else:
        delivered = {
            run: sum(p.value or 0 for p in found) for run, found in by_run.items()
        }
    assert delivered == dict.fromkeys(runs, ADDED)
    assert {p.temporality for p in points} == {temporality}


TESTS = Path(__file__).resolve().parent
SERVERS = {
    "gunicorn": ["gunicorn", "-w", "2", "--bind", "{bind}", "zero_code_app:flask_app"],
    "uvicorn": [
        "uvicorn",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "zero_code_app:fastapi_app",
    ],
}
PATHS = {"gunicorn": "/users/{n}", "uvicorn": "/items/{n}"}


@pytest.mark.peer
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_sigterm_of_a_prefork_server_delivers_every_worker(
    server: str, rotel: Rotel
) -> None:
    """SIGTERM to the server under the runner: each worker's last counts arrive."""
    port = reserved_port()
    program, *args = SERVERS[server]
    argv = [
        str(BIN / "ron-metrics"),
        "run",
        "--",
        str(BIN / program),
        *(a.format(bind=f"127.0.0.1:{port}", port=port) for a in args),
    ]
    env = {
        **_env(rotel, "grpc", "cumulative"),
        "OTEL_SERVICE_NAME": f"exit-{server}",
        "PYTHONPATH": str(TESTS),
    }
    process = subprocess.Popen(
        argv, cwd=TESTS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until_listening(port, process)
        for n in range(REQUESTS):
            url = f"http://127.0.0.1:{port}" + PATHS[server].format(n=n)
            assert httpx.get(url, timeout=30).status_code == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        stop_process(process)
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    deadline = time.monotonic() + 60
    while _worker_total(rotel, f"exit-{server}") != REQUESTS:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _worker_total(rotel, f"exit-{server}") == REQUESTS


REQUESTS = 30


def _worker_total(rotel: Rotel, service: str) -> float:
    # Cumulative: each process's latest point, summed over the processes.
    latest: dict[str, float] = {}
    for point in rotel.points():
        if (
            point.metric == "zero_code.jobs"
            and point.resource.get("service.name") == service
        ):
            latest[point.resource.get("service.instance.id", "")] = point.value or 0.0
    return sum(latest.values())


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on {port}")
