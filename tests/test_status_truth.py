"""
The recorded status is the status the client got.

Random handlers (status codes, exceptions before and after the response starts,
streaming bodies) are served by a real uvicorn through the ASGI middleware, and a
real FastAPI app raises under ``app.add_middleware``; each client-seen status is
compared with the recorded ``http.response.status_code`` (and ``error.type``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from ron_metrics import Runtime
from ron_metrics.asgi import MetricsMiddleware
from ron_metrics.testing import runtime_for_tests, samples
from test_prometheus_server import _prometheus_for  # noqa: F401 - the fixture, used by name

COUNT = "http_server_request_duration_seconds_count"


class BoomError(Exception):
    pass


async def handler_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """
    ``/{status}/{chunks}/{fail}``: fail is ``none``, ``before``, ``after`` or
    ``disconnect`` (wait for the client to leave, then fail).
    """
    assert scope["type"] == "http"
    _, status, chunks, fail = scope["path"].split("/")
    if fail == "before":
        raise BoomError("before the response")
    if fail == "disconnect":
        while (await receive())["type"] != "http.disconnect":
            pass
        raise BoomError("the client left")
    await send(
        {
            "type": "http.response.start",
            "status": int(status),
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    for _ in range(int(chunks)):
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
    if fail == "after":
        raise BoomError("after the response started")
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class Served:
    """A real uvicorn on a socket bound here (port 0), in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock]))
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, Runtime]]:
    with runtime_for_tests() as runtime:
        app = MetricsMiddleware(handler_app, meter_provider=runtime.meter_provider)
        with Served(app) as server:
            yield server, runtime


def recorded(runtime: Runtime) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in samples(runtime).items():
        if name == COUNT:
            attrs = dict(labels)
            key = (
                attrs.get("http_response_status_code", ""),
                attrs.get("error_type", ""),
            )
            found[key] += int(value)
    return found


def client_saw(client: httpx.Client, url: str) -> str:
    try:
        with client.stream("GET", url) as response:
            status = str(response.status_code)
            try:
                for _ in response.iter_bytes():
                    pass
            except httpx.HTTPError:
                pass  # a body cut short still came with its status
            return status
    except httpx.HTTPError:
        return ""


def leave_before_the_answer(url: str, path: str) -> str:
    """Send the request and close at once: the client sees no status at all."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return ""


HANDLERS = st.tuples(
    st.sampled_from([200, 201, 204, 302, 400, 404, 429, 500, 502, 503]),
    st.integers(min_value=0, max_value=3),
    st.sampled_from(["none", "before", "after", "disconnect"]),
)


@settings(max_examples=25)
@given(st.lists(HANDLERS, min_size=1, max_size=6))
def test_recorded_status_is_what_the_client_got(
    served: tuple[Served, Runtime], handlers: list[tuple[int, int, str]]
) -> None:
    """Per status (and error.type), the recorded counts move exactly as seen."""
    server, runtime = served
    before = recorded(runtime)
    seen: Counter[tuple[str, str]] = Counter()
    # A connection per request: the server closes one after a failed response.
    with httpx.Client(timeout=30, headers={"Connection": "close"}) as client:
        for status, asked_chunks, fail in handlers:
            chunks = 0 if status == 204 else asked_chunks  # a 204 has no body
            path = f"/{status}/{chunks}/{fail}"
            if fail == "disconnect":
                got = leave_before_the_answer(server.url, path)
            else:
                got = client_saw(client, f"{server.url}{path}")
            error = BoomError.__qualname__ if fail != "none" else ""
            if not error and int(got) >= 500:
                error = got
            seen[(got, error)] += 1
    deadline = time.monotonic() + 30
    while recorded(runtime) - before != seen and time.monotonic() < deadline:
        time.sleep(0.02)  # the last request's record lands as its response ends
    assert recorded(runtime) - before == seen


def fastapi_app(provider: Any) -> Any:
    from fastapi import FastAPI, HTTPException

    app = FastAPI(telemetry={"metrics": False})
    app.add_middleware(MetricsMiddleware, meter_provider=provider)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("no")

    @app.get("/busy")
    async def busy() -> None:
        raise HTTPException(503)

    return app


def test_fastapi_route_that_raises_records_500() -> None:
    """The documented add_middleware setup: an exception records 500, error.type."""
    with runtime_for_tests() as runtime:
        with (
            Served(fastapi_app(runtime.meter_provider)) as server,
            # A connection per request: the server may close one after an exception.
            httpx.Client(timeout=30, headers={"Connection": "close"}) as client,
        ):
            statuses = [client.get(f"{server.url}/boom").status_code for _ in range(3)]
            statuses += [client.get(f"{server.url}/busy").status_code]
        assert statuses == [500, 500, 500, 503]
        found = recorded(runtime)
        assert found[("500", "RuntimeError")] == 3
        assert found[("503", "503")] == 1
        assert ("", "RuntimeError") not in found


@pytest.mark.peer
def test_dashboard_5xx_panel_shows_500s_and_503s(prometheus_for: Any) -> None:
    """A real Prometheus scraping the app's metrics: the 5xx panel shows both codes."""
    import json
    import urllib.parse
    from pathlib import Path

    from conftest import prometheus_config
    from ron_metrics import start
    from ron_metrics.testing import config_for_tests

    dashboard = json.loads(
        (Path(__file__).parent.parent / "dashboards" / "ron-metrics.json").read_text()
    )
    (panel,) = [
        p for p in dashboard["panels"] if p.get("title", "").startswith("Server errors")
    ]
    expr = (
        panel["targets"][0]["expr"]
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$__rate_interval", "1m")
    )
    config = config_for_tests(exporter=prometheus_config())
    with (
        start(config, set_global=False) as runtime,
        Served(fastapi_app(runtime.meter_provider)) as server,
        # A connection per request: the server may close one after an exception.
        httpx.Client(timeout=30, headers={"Connection": "close"}) as client,
    ):
        base = prometheus_for(str(runtime.address).removeprefix("http://"))
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 90
        while set(seen) != {"500", "503"} and time.monotonic() < deadline:
            for path in ("/boom", "/busy"):
                client.get(f"{server.url}{path}")
            try:
                answer = httpx.get(
                    f"{base}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5
                ).json()
            except (httpx.HTTPError, ValueError):
                answer = {}
            seen = {
                series["metric"].get("http_response_status_code", ""): float(
                    series["value"][1]
                )
                for series in answer.get("data", {}).get("result", [])
                if float(series["value"][1]) > 0
            }
            time.sleep(0.5)
        assert set(seen) == {"500", "503"}, seen
