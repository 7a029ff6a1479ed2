from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from ron_metrics import Config, Runtime, start
from ron_metrics.testing import config_for_tests

# Property tests are derandomised by default (a fixed, reproducible sequence of
# examples), so the suite gives the same verdict on every run; the "explore"
# profile draws fresh random examples for local bug hunting:
#   HYPOTHESIS_PROFILE=explore pytest tests/test_properties.py
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

StartFn = Callable[..., Runtime]


# RONMETRICS_TEST_SDK_PATH=1 (not RON_METRICS_*: that prefix is config) runs the suite with the fast path off wherever a test
# does not choose itself (every config is parsed here), so both paths pass the same
# tests: `make test-sdk-path`.
SDK_PATH = os.environ.get("RONMETRICS_TEST_SDK_PATH") == "1"


@pytest.fixture(autouse=True)
def _path_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    if not SDK_PATH:
        return
    from ron_metrics.config import loader
    from ron_metrics.config.parsing import parse_config as parse

    def sdk_path(raw: Any) -> Config:
        sdk = raw.get("sdk") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and not (isinstance(sdk, dict) and "fast_path" in sdk):
            raw = {**raw, "sdk": {**(sdk or {}), "fast_path": False}}
        return parse(raw)

    monkeypatch.setattr(loader, "parse_config", sdk_path)


@pytest.fixture(name="start_runtime")
def _start_runtime() -> Iterator[StartFn]:
    """
    Start runtimes (never the OTel global) and shut every one down afterwards.
    """
    started: list[Runtime] = []

    def factory(config: Config | None = None, **sections: Any) -> Runtime:
        runtime = start(config or config_for_tests(**sections), set_global=False)
        started.append(runtime)
        return runtime

    yield factory
    for runtime in started:
        runtime.shutdown()


def prometheus_config(**prometheus: Any) -> dict[str, Any]:
    return {"kind": "prometheus", "prometheus": prometheus}


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"{program} is not installed; the test command installs it (scripts/peers)"
        )
    return path


ROTEL_BINARY = "rotel-agent"


def rotel_binary() -> str:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        pytest.fail("rotel is not installed; the locked test dependencies include it")
    return str(Path(spec.origin).parent / ROTEL_BINARY)


def stop_process(process: subprocess.Popen[Any], grace: float = 15) -> None:
    """Stop a process we started, by PID: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def threads_started_since(before: set[int | None]) -> list[str]:
    """Names of live threads that did not exist in ``before`` (a set of thread idents)."""
    return [
        t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()
    ]


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a clean process: no OTel global yet); its stdout."""
    import sys

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout


def get_when_served(url: str, within: float = 60.0) -> httpx.Response:
    """
    GET ``url`` once something listens there: a server that binds after start-up
    returns (a multi-process group's serving member takes its port within a poll)
    refuses connections until then. Only a refused connection is retried, so no
    request the server saw is sent twice.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return httpx.get(url, timeout=30)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without RON_METRICS_*/OTEL_* (plus ``extra``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RON_METRICS_", "OTEL_"))
    }
    env.update(extra)
    return env


def demo_command(config: str, tick: str = "0.2") -> tuple[list[str], dict[str, str]]:
    """The argv and a clean environment (no RON_METRICS_*/OTEL_*) to run the demo."""
    import sys

    return [
        sys.executable,
        "-m",
        "ron_metrics",
        "demo",
        "--config",
        config,
        "--tick",
        tick,
    ], clean_env()


@contextmanager
def forking_group(code: str, *args: str, children: int = 3) -> Iterator[list[int]]:
    """
    Run ``code`` (a script that starts a group member, forks ``children`` that
    each print ``child PID``, then prints ``ready``) and yield the children's
    PIDs once all are there; every process is stopped by PID afterwards.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    pids: list[int] = []
    try:
        assert process.stdout is not None
        ready = False
        for line in process.stdout:
            if line.startswith("child"):
                pids.append(int(line.split()[1]))
            ready |= line.strip() == "ready"
            if ready and len(pids) == children:
                break
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
