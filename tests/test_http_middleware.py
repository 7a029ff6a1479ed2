"""
The HTTP server middleware, driven over real HTTP: FastAPI on uvicorn, Flask on
gunicorn, Quart on hypercorn — each example app as a user would run it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import clean_env, stop_process
from ron_metrics.testing import reserved_port

ROOT = Path(__file__).resolve().parent.parent

SERVERS = {
    "fastapi": [
        "-m",
        "uvicorn",
        "examples.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
    ],
    "flask": ["-m", "gunicorn", "examples.flask_app:app", "--workers", "1", "--bind"],
    "quart": ["-m", "hypercorn", "examples.quart_app:app", "--bind"],
}


def wait_port(port: int, process: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def serve(kind: str) -> tuple[subprocess.Popen[bytes], str, str]:
    app_port, metrics_port = reserved_port(), reserved_port()
    where = f"127.0.0.1:{app_port}" if kind != "fastapi" else str(app_port)
    process = subprocess.Popen(
        [sys.executable, *SERVERS[kind], where],
        cwd=ROOT,
        env=clean_env(
            RON_METRICS_EXPORTER__PROMETHEUS__BIND=f"127.0.0.1:{metrics_port}"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(app_port, process)
        wait_port(metrics_port, process)
    except RuntimeError:
        stop_process(process)
        raise
    return process, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{metrics_port}"


@pytest.fixture(name="server")
def _server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    process, app, metrics = serve(request.param)
    try:
        yield app, metrics
    finally:
        stop_process(process)


def duration_counts(metrics: str) -> dict[frozenset[tuple[str, str]], float]:
    body = httpx.get(f"{metrics}/metrics", timeout=10).text
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "http_server_request_duration_seconds_count"
    }


def only(counts: dict[frozenset[tuple[str, str]], float], **labels: str) -> float:
    matches = [v for k, v in counts.items() if set(labels.items()) <= k]
    assert len(matches) == 1, (labels, counts)
    return matches[0]


CASES = [
    ("fastapi", "/items/{item_id}", "/items/", "/fail", "503"),
    ("flask", "/users/<int:user_id>", "/users/", "/boom", "500"),
    ("quart", "/orders/<int:order_id>", "/orders/", None, None),
]


@pytest.mark.peer
@pytest.mark.parametrize(
    ("server", "template", "prefix", "failing", "error"),
    CASES,
    ids=[case[0] for case in CASES],
    indirect=["server"],
)
def test_requests_are_counted_by_route_template(
    server: tuple[str, str],
    template: str,
    prefix: str,
    failing: str | None,
    error: str | None,
) -> None:
    """Exact counts per route template; unmatched paths get no route; never a raw path."""
    app, metrics = server
    with httpx.Client(timeout=10) as client:
        for item in (1, 1, 2, 3, 4):
            assert client.get(f"{app}{prefix}{item}").status_code == 200
        for _ in range(2):
            assert client.get(f"{app}/no/such/path").status_code == 404
        if failing is not None:
            assert client.get(f"{app}{failing}").status_code >= 500
    counts = duration_counts(metrics)
    assert only(counts, http_route=template, http_response_status_code="200") == 5
    # No route attribute: in Prometheus the family's http_route label is empty.
    unmatched = [
        v
        for k, v in counts.items()
        if ("http_response_status_code", "404") in k
        and dict(k).get("http_route", "") == ""
    ]
    assert unmatched == [2]
    if error is not None:
        assert only(counts, error_type=error) == 1
    for labels in counts:
        for name, value in labels:
            assert not value.startswith((prefix + "1", prefix + "2", "/no/such")), (
                name,
                value,
            )
    for labels in counts:
        assert ("http_request_method", "GET") in labels
        assert ("url_scheme", "http") in labels


@pytest.mark.peer
@pytest.mark.parametrize("server", ["fastapi"], indirect=True)
def test_seconds_buckets_and_excluded_paths(server: tuple[str, str]) -> None:
    """Durations land in the seconds buckets; excluded paths are not measured."""
    app, metrics = server
    with httpx.Client(timeout=10) as client:
        client.get(f"{app}/items/7")
        client.get(f"{app}/healthz")
    body = httpx.get(f"{metrics}/metrics", timeout=10).text
    assert 'le="0.005"' in body and 'le="10.0"' in body
    assert "/healthz" not in body.split("http_server_request_duration")[1]
    fast = [
        line
        for line in body.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket")
        and 'le="0.25"' in line
        and "/items/{item_id}" in line
    ]
    assert fast and float(fast[0].rsplit(" ", 1)[1]) == 1.0


def test_fastapi_builtin_telemetry_and_middleware_make_one_family() -> None:
    """With FastAPI's own metrics on, the middleware steps aside: one family, exact."""
    import asyncio

    from fastapi import FastAPI

    from ron_metrics.asgi import MetricsMiddleware
    from ron_metrics.testing import runtime_for_tests, sample_value, samples

    with runtime_for_tests() as runtime:
        app = FastAPI(telemetry={"meter_provider": runtime.meter_provider})
        app.add_middleware(MetricsMiddleware, meter_provider=runtime.meter_provider)

        @app.get("/things/{thing}")
        async def thing(thing: str) -> dict[str, str]:
            return {"thing": thing}

        async def drive() -> list[int]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return [(await c.get(f"/things/{i}")).status_code for i in range(3)]

        assert asyncio.run(drive()) == [200, 200, 200]
        counts = [
            value
            for (name, _labels), value in samples(runtime).items()
            if name == "http_server_request_duration_seconds_count"
        ]
        assert counts == [3]
        assert sample_value(runtime, "rejected_total", reason="name_collision") == 0


def test_exceptions_are_recorded_and_reraised() -> None:
    """An exception escaping the app is recorded as error.type and re-raised as is."""
    import asyncio

    from ron_metrics.asgi import MetricsMiddleware
    from ron_metrics.testing import runtime_for_tests, samples

    class BoomError(Exception):
        pass

    async def app(scope: object, receive: object, send: object) -> None:
        raise BoomError("no")

    with runtime_for_tests() as runtime:
        wrapped = MetricsMiddleware(app, meter_provider=runtime.meter_provider)
        scope = {"type": "http", "method": "GET", "path": "/x", "scheme": "http"}

        async def call() -> None:
            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b""}

            async def send(message: object) -> None:
                return None

            await wrapped(scope, receive, send)

        with pytest.raises(BoomError):
            asyncio.run(call())
        errors = {
            dict(labels).get("error_type")
            for (name, labels), _ in samples(runtime).items()
            if name == "http_server_request_duration_seconds_count"
        }
        assert errors == {
            "test_exceptions_are_recorded_and_reraised.<locals>.BoomError"
        }
        active = [
            value
            for (name, _), value in samples(runtime).items()
            if name == "http_server_active_requests"
        ]
        assert active == [0]
