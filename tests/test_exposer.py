from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_om,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from conftest import StartFn, prometheus_config
from ron_metrics import start_async
from ron_metrics.testing import config_for_tests, sample_value

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def text_samples(body: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parse_text(body)
        for s in family.samples
    }


class TestServing:
    def test_binds_ephemeral_loopback_and_reports_real_port(
        self, start_runtime: StartFn
    ) -> None:
        """The default bind is 127.0.0.1:0 and Runtime.address has the real port."""
        runtime = start_runtime(exporter={"kind": "prometheus"})
        assert runtime.address is not None
        assert runtime.address.startswith("http://127.0.0.1:")
        assert not runtime.address.endswith(":0")

    def test_metrics_text_has_app_counter(self, start_runtime: StartFn) -> None:
        """GET /metrics serves text 0.0.4 with the app's counter value and security headers."""
        runtime = start_runtime(exporter=prometheus_config())
        runtime.get_meter("app").create_counter("orders", description="Orders.").add(
            7, {"shop": "eu"}
        )
        response = httpx.get(f"{runtime.address}/metrics", timeout=10)
        assert response.status_code == 200
        assert (
            response.headers["content-type"]
            == "text/plain; version=0.0.4; charset=utf-8"
        )
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        values = text_samples(response.text)
        assert values[("orders_total", frozenset({("shop", "eu")}))] == 7

    def test_openmetrics_when_preferred(self, start_runtime: StartFn) -> None:
        """Prometheus' Accept header gets OpenMetrics 1.0 that parses and ends in # EOF."""
        runtime = start_runtime(exporter=prometheus_config())
        runtime.get_meter("app").create_counter("jobs").add(3)
        response = httpx.get(
            f"{runtime.address}/metrics",
            headers={"Accept": PROMETHEUS_ACCEPT},
            timeout=10,
        )
        assert response.headers["content-type"].startswith(
            "application/openmetrics-text; version=1.0.0"
        )
        assert response.text.endswith("# EOF\n")
        families = {
            family.name: family
            for family in parse_om(response.text)  # type: ignore[no-untyped-call]  # unannotated upstream
        }
        assert families["jobs"].samples[0].value == 3

    def test_gzip_when_asked(self, start_runtime: StartFn) -> None:
        """Accept-Encoding: gzip gets a gzip body that decompresses to the text format."""
        runtime = start_runtime(exporter=prometheus_config())
        with socket.create_connection(
            ("127.0.0.1", int(str(runtime.address).rsplit(":", 1)[1]))
        ) as sock:
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
            )
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"content-encoding: gzip" in head.lower()
        assert b"# TYPE rejected_total counter" in gzip.decompress(body)

    def test_healthz_and_readyz(self, start_runtime: StartFn) -> None:
        """/healthz says ok; /readyz is 200 with ready true while everything works."""
        runtime = start_runtime(exporter=prometheus_config())
        health = httpx.get(f"{runtime.address}/healthz", timeout=5)
        assert (health.status_code, health.text) == (200, "ok\n")
        ready = httpx.get(f"{runtime.address}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"ready": True}

    def test_readyz_flips_with_a_failing_check_and_back(
        self, start_runtime: StartFn
    ) -> None:
        """A failing health check makes /readyz 503 with the reason and Retry-After, then 200 again."""
        runtime = start_runtime(exporter=prometheus_config())
        runtime.health.set("database", ok=False, detail="primary unreachable")
        down = httpx.get(f"{runtime.address}/readyz", timeout=5)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        assert down.json() == {
            "ready": False,
            "degraded": ["database: primary unreachable"],
        }
        runtime.health.set("database", ok=True)
        assert httpx.get(f"{runtime.address}/readyz", timeout=5).status_code == 200

    def test_curl_sees_metrics(self, start_runtime: StartFn) -> None:
        """curl (a second real client) gets the same exposition."""
        import subprocess

        from conftest import require

        runtime = start_runtime(exporter=prometheus_config())
        out = subprocess.run(
            [require("curl"), "-sS", "--max-time", "10", f"{runtime.address}/metrics"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert "# TYPE io_timeouts_total counter" in out


class TestRejections:
    @pytest.mark.parametrize(
        "method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW"]
    )
    def test_other_methods_get_405_with_allow(
        self, start_runtime: StartFn, method: str
    ) -> None:
        """Every method but GET gets 405 with Allow: GET, counted as reason=method."""
        runtime = start_runtime(exporter=prometheus_config())
        response = httpx.request(method, f"{runtime.address}/metrics", timeout=5)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        assert response.headers["cache-control"] == "no-store"
        assert sample_value(runtime, "rejected_total", reason="method") == 1

    def test_unknown_path_404(self, start_runtime: StartFn) -> None:
        """Unknown paths get 404, counted as reason=path."""
        runtime = start_runtime(exporter=prometheus_config())
        response = httpx.get(f"{runtime.address}/admin", timeout=5)
        assert response.status_code == 404
        assert response.headers["x-content-type-options"] == "nosniff"
        assert sample_value(runtime, "rejected_total", reason="path") == 1

    def test_get_with_body_rejected_before_read(self, start_runtime: StartFn) -> None:
        """A GET announcing a body gets 400 and Connection: close, counted once."""
        runtime = start_runtime(exporter=prometheus_config())
        response = httpx.request(
            "GET", f"{runtime.address}/metrics", content=b"x" * 10, timeout=5
        )
        assert response.status_code == 400
        assert response.headers["connection"] == "close"
        assert sample_value(runtime, "rejected_total", reason="body") == 1


class TestSingleFlight:
    def test_concurrent_scrapes_share_one_collection(
        self, start_runtime: StartFn
    ) -> None:
        """N concurrent scrapes cause one collection, and all get the same body."""
        runtime = start_runtime(exporter=prometheus_config())
        gate = threading.Event()

        def slow(_options: CallbackOptions) -> list[Observation]:
            gate.wait(5)
            return []

        runtime.get_meter("app").create_observable_gauge("slow", callbacks=[slow])
        before = runtime._hub.collections

        async def scrape_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=20) as client:
                tasks = [
                    asyncio.create_task(client.get(f"{runtime.address}/metrics"))
                    for _ in range(8)
                ]
                await asyncio.sleep(
                    0.5
                )  # all eight are now waiting on the one collection
                gate.set()
                return await asyncio.gather(*tasks)

        responses = asyncio.run(scrape_all())
        assert {r.status_code for r in responses} == {200}
        assert runtime._hub.collections - before == 1
        assert len({r.content for r in responses}) == 1

    @pytest.mark.timeout(600)  # heavy: 50k series; more than the suite's hang guard
    def test_healthz_answers_while_big_scrape_renders(
        self, start_runtime: StartFn
    ) -> None:
        """/healthz answers while a 50k-series scrape is still rendering."""
        runtime = start_runtime(
            cardinality={"max_series": 60_000}, exporter=prometheus_config()
        )
        counter = runtime.get_meter("app").create_counter("wide")
        for index in range(50_000):
            counter.add(1, {"k": str(index)})
        done = threading.Event()
        result: list[int] = []

        def big_scrape() -> None:
            result.append(
                len(httpx.get(f"{runtime.address}/metrics", timeout=60).content)
            )
            done.set()

        thread = threading.Thread(target=big_scrape)
        thread.start()
        time.sleep(0.05)
        answered_during_scrape = 0
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                assert client.get(f"{runtime.address}/healthz").status_code == 200
                if not done.is_set():
                    answered_during_scrape += 1
        thread.join(60)
        assert result and result[0] > 1_000_000
        assert answered_during_scrape >= 1


class TestAccessLog:
    def test_one_json_line_per_request_without_headers(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each request logs one JSON line with the documented fields, never header values."""
        runtime = start_runtime(exporter=prometheus_config())
        with caplog.at_level(logging.INFO, logger="ron_metrics.access"):
            httpx.get(
                f"{runtime.address}/healthz",
                headers={
                    "Authorization": "Bearer top-secret-token",
                    "User-Agent": "probe/1",
                    "X-Request-Id": "abc-123",
                },
                timeout=5,
            )
            deadline = time.monotonic() + 60
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.01)
        (record,) = [r for r in caplog.records if r.name == "ron_metrics.access"]
        line = json.loads(record.getMessage())
        assert {
            "ts",
            "level",
            "service",
            "endpoint",
            "method",
            "status",
            "reason",
            "peer_addr",
            "user_agent",
            "corr_id",
            "duration_ms",
        } <= set(line)
        assert (
            line["endpoint"],
            line["status"],
            line["user_agent"],
            line["corr_id"],
        ) == ("/healthz", 200, "probe/1", "abc-123")
        assert "top-secret-token" not in caplog.text

    def test_render_timeout_logs_its_reason(
        self, start_runtime: StartFn, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A scrape past scrape_timeout is 503, counted, and logged with its reason."""
        runtime = start_runtime(exporter=prometheus_config(scrape_timeout="200ms"))
        gate = threading.Event()

        def slow(_options: CallbackOptions) -> list[Observation]:
            gate.wait(5)
            return []

        runtime.get_meter("app").create_observable_gauge("slow", callbacks=[slow])
        with caplog.at_level(logging.INFO, logger="ron_metrics.access"):
            response = httpx.get(f"{runtime.address}/metrics", timeout=10)
            gate.set()
        assert response.status_code == 503
        (line,) = [
            json.loads(r.getMessage())
            for r in caplog.records
            if r.name == "ron_metrics.access"
        ]
        assert (line["status"], line["reason"]) == (503, "render_timeout")
        assert sample_value(runtime, "io_timeouts_total", op="render") == 1


class TestUnixSocket:
    def test_uds_is_private_and_removed(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """A unix: bind makes a 0700 directory and a 0600 socket, removed at shutdown."""
        path = tmp_path / "run" / "metrics.sock"
        runtime = start_runtime(exporter=prometheus_config(bind=f"unix:{path}"))
        assert runtime.address == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, timeout=5) as client:
            assert client.get("http://ron/healthz").text == "ok\n"
        runtime.shutdown()
        assert not path.exists()


class TestAsyncHost:
    @pytest.mark.asyncio
    async def test_runs_in_the_hosts_loop(self) -> None:
        """start_async serves from the caller's loop; shutdown_async stops it."""
        runtime = await start_async(
            config_for_tests(exporter=prometheus_config()), set_global=False
        )
        try:
            runtime.get_meter("app").create_counter("async_hits").add(2)
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(f"{runtime.address}/metrics")
            assert "async_hits_total 2.0" in response.text
            assert threading.active_count() >= 1
            assert not any(t.name == "ron-metrics-loop" for t in threading.enumerate())
        finally:
            await runtime.shutdown_async()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(timeout=2) as client:
                await client.get(f"{runtime.address}/healthz")


class TestExpositionOptions:
    def test_target_info_and_scope_labels_are_configurable(
        self, start_runtime: StartFn
    ) -> None:
        """target_info can be turned off and otel_scope_* labels on."""
        runtime = start_runtime(
            exporter=prometheus_config(target_info=False, scope_labels=True)
        )
        runtime.get_meter("shop", "2.1").create_counter("orders").add(1)
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        assert "target_info" not in body
        assert 'otel_scope_name="shop"' in body
        assert 'otel_scope_version="2.1"' in body

    def test_defaults_have_target_info_without_scope_labels(
        self, start_runtime: StartFn
    ) -> None:
        """By default the resource is on target_info and series carry no scope labels."""
        runtime = start_runtime(
            service={"name": "svc", "build_version": "9.9"},
            exporter=prometheus_config(),
        )
        runtime.get_meter("shop").create_counter("orders").add(1)
        body = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        assert (
            'service_name="svc"' in body.split("target_info{", 1)[1].split("\n", 1)[0]
        )
        assert "otel_scope_name" not in body


class TestEncoders:
    @pytest.mark.parametrize("encoder", ["direct", "reference"])
    @pytest.mark.parametrize("gzip_ok", [True, False])
    def test_both_encoders_serve_the_same_samples(
        self, start_runtime: StartFn, encoder: str, gzip_ok: bool
    ) -> None:
        """The direct encoder and the exporter-prometheus path serve the same samples."""
        runtime = start_runtime(exporter=prometheus_config(encoder=encoder))
        meter = runtime.get_meter("app")
        meter.create_counter("orders", description='Say "hi"').add(7, {"shop": 'e"u'})
        meter.create_histogram("wait", unit="s").record(0.3, {"route": "/a"})
        headers = {"Accept-Encoding": "gzip" if gzip_ok else "identity"}
        response = httpx.get(f"{runtime.address}/metrics", headers=headers, timeout=10)
        assert response.status_code == 200
        assert (response.headers.get("content-encoding") == "gzip") is gzip_ok
        got = text_samples(response.text)
        assert got[("orders_total", frozenset({("shop", 'e"u')}))] == 7
        assert (
            got[("wait_seconds_bucket", frozenset({("route", "/a"), ("le", "0.5")}))]
            == 1
        )
        assert sample_value(runtime, "wait_seconds_count", route="/a") == 1


def test_an_unhandled_exposer_error_is_one_json_line_and_rewraps_nothing(
    start_runtime: StartFn,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A /metrics that fails: a 500, one JSON line, and no handler left behind."""
    from ron_metrics.exporters.prometheus.scrape import ScrapeCoalescer

    runtime = start_runtime(exporter=prometheus_config())
    exposer_log = logging.getLogger("ron_metrics.exposer")
    handlers_before = list(exposer_log.handlers)

    async def broken(self: ScrapeCoalescer, *args: object, **kwargs: object) -> None:
        raise RuntimeError("collection broke")

    monkeypatch.setattr(ScrapeCoalescer, "get", broken)
    caplog.set_level(logging.ERROR, logger="ron_metrics.exposer")
    assert httpx.get(f"{runtime.address}/metrics", timeout=30).status_code == 500
    # Quart attaches its own handler to the app's logger when nothing handles it;
    # the app's logger is ours, and ron-metrics' loggers are left as they were.
    assert exposer_log.handlers == handlers_before
    lines = [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "ron_metrics.exposer" and "exposer_exception" in r.getMessage()
    ]
    assert len(lines) == 1
    assert lines[0]["error"] == "RuntimeError('collection broke')"
    assert lines[0]["endpoint"] == "/metrics"
