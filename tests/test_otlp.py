from __future__ import annotations

import asyncio
import math
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from collector import Rotel
from conftest import SDK_PATH, StartFn
from ron_metrics import ConfigError, load_config
from ron_metrics.exporters.otlp import build_exporter
from ron_metrics.testing import reserved_port, sample_value
from tls_material import Pki, make_pki


@pytest.fixture(name="rotel")
def _rotel(tmp_path: Path) -> Iterator[Rotel]:
    collector = Rotel(tmp_path)
    collector.start()
    yield collector
    collector.stop()


def otlp_exporter(endpoint: str, protocol: str, **extra: object) -> dict[str, object]:
    otlp: dict[str, object] = {
        "endpoint": endpoint,
        "protocol": protocol,
        "interval": "500ms",
        "timeout": "400ms",
    }
    otlp.update(extra)
    return {"kind": "otlp", "otlp": otlp}


@pytest.mark.peer
class TestDelivery:
    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_gzip_compression_is_accepted(
        self, start_runtime: StartFn, rotel: Rotel, protocol: str
    ) -> None:
        """compression = "gzip" still delivers exact values over both protocols."""
        endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
        runtime = start_runtime(
            exporter=otlp_exporter(endpoint, protocol, compression="gzip")
        )
        runtime.get_meter("app").create_counter("zipped").add(6)
        point = rotel.wait_for("zipped", lambda p: p.value == 6)
        assert point is not None
        assert point.value == 6

    def test_generic_env_endpoint_is_a_base_url_over_http(
        self, start_runtime: StartFn, rotel: Rotel
    ) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT=http://host:port with http/protobuf delivers."""
        base = rotel.http_endpoint.removesuffix("/v1/metrics")
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "generic",
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": base,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
            }
        )
        assert config.exporter.otlp.resolved_endpoint == base + "/v1/metrics"
        runtime = start_runtime(config)
        runtime.get_meter("app").create_counter("based").add(4)
        point = rotel.wait_for("based", lambda p: p.value == 4)
        assert point is not None
        assert runtime.readiness().ready

    @pytest.mark.parametrize("preference", ["delta", "lowmemory"])
    def test_delta_temporality_sums_to_the_total(
        self, start_runtime: StartFn, rotel: Rotel, preference: str
    ) -> None:
        """Delta preference: counters and histograms arrive as deltas that add up."""
        runtime = start_runtime(
            exporter=otlp_exporter(
                rotel.http_endpoint, "http/protobuf", temporality=preference
            )
        )
        meter = runtime.get_meter("app")
        counter = meter.create_counter("deltas")
        histogram = meter.create_histogram("waits", unit="s")
        updown = meter.create_up_down_counter("depth")
        counter.add(5)
        histogram.record(0.2)
        updown.add(4)
        assert rotel.wait_for("deltas", lambda p: p.value == 5) is not None
        counter.add(3)
        histogram.record(0.4)
        updown.add(-1)
        assert rotel.wait_for("deltas", lambda p: p.value == 3) is not None
        assert rotel.wait_for("depth", lambda p: p.value == 3) is not None
        runtime.shutdown()
        points = [p for p in rotel.points() if p.metric == "deltas"]
        assert {p.temporality for p in points} == {"delta"}
        assert sum(p.value or 0 for p in points) == 8
        waits = [p for p in rotel.points() if p.metric == "waits"]
        assert {p.temporality for p in waits} == {"delta"}
        assert sum(p.count or 0 for p in waits) == 2
        depth = [p for p in rotel.points() if p.metric == "depth"]
        assert {p.temporality for p in depth} == {"cumulative"}

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_values_attributes_and_resource_arrive(
        self, start_runtime: StartFn, rotel: Rotel, protocol: str
    ) -> None:
        """Exact counter value, histogram count/sum, attributes and resource reach rotel."""
        endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
        runtime = start_runtime(
            service={"name": "checkout", "instance": "pod-7", "build_version": "2.0.1"},
            labels={"extra": {"region": "eu-west-1"}},
            exporter=otlp_exporter(endpoint, protocol),
        )
        meter = runtime.get_meter("app")
        counter = meter.create_counter("orders")
        histogram = meter.create_histogram("latency", unit="s")
        for _ in range(17):
            counter.add(1, {"shop": "eu"})
        for value in (0.1, 0.2, 0.3):
            histogram.record(value, {"route": "/buy"})
        point = rotel.wait_for("orders", lambda p: p.value == 17, shop="eu")
        assert point is not None and point.value == 17
        assert point.resource["service.name"] == "checkout"
        assert point.resource["service.instance.id"] == "pod-7"
        assert point.resource["service.version"] == "2.0.1"
        assert point.resource["region"] == "eu-west-1"
        hist = rotel.wait_for("latency", lambda p: p.count == 3, route="/buy")
        assert hist is not None and hist.count == 3
        assert hist.sum == pytest.approx(0.6)
        assert runtime.readiness().ready


@pytest.mark.peer
class TestOutage:
    def test_outage_degrades_then_recovers_without_losing_counts(
        self, start_runtime: StartFn, rotel: Rotel
    ) -> None:
        """Collector down: add() never blocks, readiness degrades, totals include the outage."""
        runtime = start_runtime(
            exporter=otlp_exporter(rotel.grpc_endpoint, "grpc", failure_threshold=2)
        )
        counter = runtime.get_meter("app").create_counter("steady")
        counter.add(10)
        assert rotel.wait_for("steady", lambda p: p.value == 10) is not None
        rotel.stop()
        # add() goes on while exports fail (its latency is measured in the
        # benchmarks, not here): every one is counted once the collector is back.
        during_outage = 0
        deadline = time.monotonic() + 60
        while "otlp: otlp_export_failing" not in runtime.readiness().degraded:
            assert time.monotonic() < deadline, "readiness never degraded"
            counter.add(1)
            during_outage += 1
            time.sleep(0.001)
        for _ in range(100):
            counter.add(1)
        during_outage += 100
        rotel.start()
        expected = 10 + during_outage
        point = rotel.wait_for("steady", lambda p: p.value == expected, timeout=30)
        assert point is not None and point.value == expected
        recovery = time.monotonic() + 60
        while not runtime.readiness().ready and time.monotonic() < recovery:
            time.sleep(0.05)
        assert runtime.readiness().ready
        failures = sample_value(runtime, "otlp_export_failures_total")
        assert failures is not None and failures >= 2


class _ReadyzWatcher:
    """Polls /readyz in a thread and remembers every status it saw."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                try:
                    self.statuses.append(
                        client.get(f"{self.address}/readyz").status_code
                    )
                except httpx.HTTPError:
                    self.statuses.append(0)
                time.sleep(0.005)

    def wait_for(self, status: int, within: float = 60) -> bool:
        deadline = time.monotonic() + within
        while status not in self.statuses and time.monotonic() < deadline:
            time.sleep(0.01)
        return status in self.statuses

    def wait_for_first(self) -> None:
        deadline = time.monotonic() + 60
        while not self.statuses and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self) -> _ReadyzWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.peer
class TestSwitching:
    def test_switch_cycle_keeps_exact_totals(
        self, start_runtime: StartFn, rotel: Rotel
    ) -> None:
        """prometheus → otlp → both → prometheus under load: every sink's total is exact."""
        from ron_metrics.testing import config_for_tests

        prometheus_port = {"bind": "127.0.0.1:0"}
        base = {"service": {"name": "switcher"}}
        runtime = start_runtime(
            exporter={"kind": "prometheus", "prometheus": prometheus_port}, **base
        )
        counter = runtime.get_meter("app").create_counter("ticks")
        done = threading.Event()
        sent = [0]

        def load() -> None:
            while not done.is_set():
                counter.add(1)
                sent[0] += 1
                time.sleep(0.0005)

        loader = threading.Thread(target=load)
        loader.start()
        otlp = otlp_exporter(rotel.grpc_endpoint, "grpc")["otlp"]
        steps = [
            {"kind": "otlp", "prometheus": prometheus_port, "otlp": otlp},
            {"kind": "both", "prometheus": prometheus_port, "otlp": otlp},
            {"kind": "prometheus", "prometheus": prometheus_port, "otlp": otlp},
        ]
        # In-process: the verdict at the last moment of each switch, when the new
        # sinks are already active (deterministic, unlike polling a short window).
        at_switch_end: list[tuple[bool, tuple[str, ...]]] = []
        remove = runtime.health.remove

        def observing_remove(name: str) -> None:
            if name == "switching":
                snapshot = runtime.readiness()
                at_switch_end.append((snapshot.ready, snapshot.degraded))
            remove(name)

        runtime.health.remove = observing_remove  # type: ignore[method-assign]  # observe calls
        http_statuses: list[int] = []
        try:
            for index, step in enumerate(steps):
                time.sleep(0.5)
                if index == 0:
                    # Over the wire too. The collector is held still, so the new
                    # OTLP sink cannot prove itself and the switch stays open until
                    # the poller has seen it, however slow the machine.
                    with (
                        _ReadyzWatcher(str(runtime.address)) as watcher,
                        ThreadPoolExecutor(1) as pool,
                    ):
                        watcher.wait_for_first()
                        with rotel.paused():
                            switching = pool.submit(
                                runtime.reload,
                                config_for_tests(exporter=step, **base),
                                timeout=60,
                            )
                            assert watcher.wait_for(503), watcher.statuses
                        changed = switching.result()
                    http_statuses = watcher.statuses
                else:
                    changed = runtime.reload(
                        config_for_tests(exporter=step, **base), timeout=10
                    )
                assert "exporter.kind" in changed
                if step["kind"] == "both":
                    # In "both", the two sinks read the same hub: both totals match.
                    both_total = sample_value(runtime, "ticks_total")
                    assert both_total is not None and both_total > 0
        finally:
            done.set()
            loader.join(10)
        assert runtime.config.exporter.kind == "prometheus"
        final = httpx.get(f"{runtime.address}/metrics", timeout=10).text
        (line,) = [row for row in final.splitlines() if row.startswith("ticks_total ")]
        assert float(line.split()[1]) == sent[0]
        # The OTLP sink's final flush (when it was retired) carried everything up to then.
        last_otlp = rotel.latest("ticks")
        assert (
            last_otlp is not None
            and last_otlp.value is not None
            and 0 < last_otlp.value <= sent[0]
        )
        assert len(at_switch_end) == 3
        assert all(
            not ready and "switching: switching" in why for ready, why in at_switch_end
        )
        assert 503 in http_statuses and http_statuses[0] == 200
        # Load stopped: switch to both once more; each sink must report the exact total.
        runtime.reload(config_for_tests(exporter=steps[1], **base), timeout=10)
        exact = rotel.wait_for("ticks", lambda p: p.value == sent[0])
        assert exact is not None
        assert exact.value == sent[0]
        assert sample_value(runtime, "ticks_total") == sent[0]

    def test_unreachable_collector_is_rolled_back(self, start_runtime: StartFn) -> None:
        """A switch to a dead collector fails, readiness returns, the old exposer still serves."""
        from ron_metrics import ExporterError
        from ron_metrics.testing import config_for_tests, reserved_port

        runtime = start_runtime(exporter={"kind": "prometheus"})
        before = runtime.address
        dead = f"http://127.0.0.1:{reserved_port()}"
        new = config_for_tests(exporter=otlp_exporter(dead, "grpc"))
        with pytest.raises(ExporterError, match="no successful export"):
            runtime.reload(new, timeout=1.5)
        assert runtime.config.exporter.kind == "prometheus"
        assert not [d for d in runtime.readiness().degraded if d.startswith("otlp")]
        assert runtime.address == before
        assert httpx.get(f"{before}/readyz", timeout=5).status_code == 200
        assert sample_value(runtime, "reload_failures_total") == 1


class TestReloadValidation:
    def test_restart_only_key_is_refused_and_changes_nothing(
        self, start_runtime: StartFn
    ) -> None:
        """Changing a provider-fixed key is refused, counted, and nothing changes."""
        from ron_metrics import ConfigError
        from ron_metrics.testing import config_for_tests

        runtime = start_runtime(exporter={"kind": "prometheus"})
        old = runtime.config
        new = config_for_tests(service={"name": "renamed"}, exporter={"kind": "none"})
        with pytest.raises(ConfigError, match="restart"):
            runtime.reload(new)
        assert runtime.config is old
        assert httpx.get(f"{runtime.address}/healthz", timeout=5).status_code == 200
        assert sample_value(runtime, "reload_failures_total") == 1

    def test_reload_emits_config_updated(self, start_runtime: StartFn) -> None:
        """A successful reload publishes ConfigUpdated with both digests and the changed keys."""
        from ron_metrics.bus import ConfigUpdated, ExporterSwitched
        from ron_metrics.testing import config_for_tests

        runtime = start_runtime(exporter={"kind": "prometheus"})
        subscription = runtime.subscribe()
        new = config_for_tests(exporter={"kind": "none"})
        assert runtime.reload(new) == ("exporter.kind",)
        events = subscription.drain()
        assert (
            ConfigUpdated(runtime_digest_before(events), new.digest, ("exporter.kind",))
            in events
        )
        assert ExporterSwitched("prometheus", "none") in events
        assert runtime.address is None

    def test_same_config_is_a_no_op(self, start_runtime: StartFn) -> None:
        """Reloading an identical config changes nothing and reports no keys."""
        runtime = start_runtime(exporter={"kind": "prometheus"})
        address = runtime.address
        assert runtime.reload(runtime.config) == ()
        assert runtime.address == address


def runtime_digest_before(events: Sequence[object]) -> str:
    from ron_metrics.bus import ConfigUpdated

    (updated,) = [event for event in events if isinstance(event, ConfigUpdated)]
    return updated.old_digest


class _MutualTlsProxy:
    """
    A TLS front for rotel (which speaks plain OTLP only): it demands a client
    certificate signed by our CA and forwards the decrypted bytes to rotel.
    """

    def __init__(self, pki: Pki, upstream_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
        self.context.load_verify_locations(pki.path("ca.pem"))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.upstream_port = upstream_port
        self.port = reserved_port()
        self.client_subjects: list[object] = []
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.client_subjects.append(writer.get_extra_info("peercert"))
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer)
            )
        finally:
            for end in (writer, up_writer):
                end.close()
                await asyncio.gather(end.wait_closed(), return_exceptions=True)

    def _on_error(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, object]
    ) -> None:
        self.refused += 1

    def __enter__(self) -> _MutualTlsProxy:
        self._thread.start()
        self._loop.set_exception_handler(self._on_error)
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(
                self._handle, "127.0.0.1", self.port, ssl=self.context
            ),
            self._loop,
        ).result(10)
        return self

    async def _shutdown(self) -> None:
        self._server.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        await asyncio.sleep(0.05)  # let the closed transports finish closing

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.mark.peer
class TestMutualTlsToCollector:
    def test_client_certificate_reaches_the_collector(
        self, start_runtime: StartFn, rotel: Rotel, tmp_path: Path
    ) -> None:
        """OTEL_EXPORTER_OTLP_{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}: mTLS works."""
        pki = make_pki(tmp_path / "pki")
        with _MutualTlsProxy(pki, rotel.http_port) as proxy:
            config = load_config(
                env={
                    "OTEL_SERVICE_NAME": "mtls",
                    "OTEL_METRICS_EXPORTER": "otlp",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": (
                        f"https://127.0.0.1:{proxy.port}/v1/metrics"
                    ),
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_EXPORTER_OTLP_CERTIFICATE": pki.path("ca.pem"),
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": pki.path("client.pem"),
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY": pki.path("client.key"),
                    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                    "OTEL_METRIC_EXPORT_INTERVAL": "500",
                }
            )
            otlp = config.exporter.otlp
            assert (otlp.compression, otlp.ca_file) == ("gzip", pki.path("ca.pem"))
            runtime = start_runtime(config)
            runtime.get_meter("app").create_counter("secured").add(7)
            point = rotel.wait_for("secured", lambda p: p.value == 7)
            assert point is not None
            assert proxy.client_subjects and all(proxy.client_subjects)

    def test_client_key_readable_by_others_is_refused(self, tmp_path: Path) -> None:
        """The client key gets the same file checks as the exposer's own key."""
        pki = make_pki(tmp_path / "pki")
        loose = tmp_path / "loose.key"
        loose.write_bytes(Path(pki.path("client.key")).read_bytes())
        loose.chmod(0o644)
        config = load_config(
            env={},
            service={"name": "s"},
            exporter={
                "kind": "otlp",
                "otlp": {
                    "endpoint": "https://127.0.0.1:1/v1/metrics",
                    "protocol": "http/protobuf",
                    "client_cert": pki.path("client.pem"),
                    "client_key": str(loose),
                },
            },
        )
        with pytest.raises(ConfigError) as caught:
            build_exporter(config.exporter.otlp)
        assert caught.value.keys == ("exporter.otlp.client_key",)

    def test_client_certificate_needs_https(self) -> None:
        """A client certificate on an http:// endpoint is a config error."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={},
                service={"name": "s"},
                exporter={
                    "kind": "otlp",
                    "otlp": {
                        "endpoint": "http://127.0.0.1:1",
                        "client_cert": "/c.pem",
                        "client_key": "/c.key",
                    },
                },
            )
        assert caught.value.keys == ("exporter.otlp.client_cert",)


def _scale_of(low: float, high: float) -> int:
    # A bucket (low, high] at scale s spans a factor of 2 ** (2 ** -s).
    return round(-math.log2(math.log2(high / low)))


@pytest.mark.peer
@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_exponential_histograms_arrive_as_exponential(
    start_runtime: StartFn, rotel: Rotel, temporality: str
) -> None:
    """Scale, zero count and every bucket's count reach rotel as recorded; delta
    points add up to the total."""
    runtime = start_runtime(
        exporter=otlp_exporter(
            rotel.http_endpoint, "http/protobuf", temporality=temporality
        ),
        cardinality={
            "instruments": {"lat": {"aggregation": "exponential", "max_scale": 4}}
        },
    )
    histogram = runtime.get_meter("app").create_histogram("lat", unit="s")
    values = [0.0, 0.0, 0.25, 0.3, 1.0, 1.5, 40.0]
    for value in values:
        histogram.record(value, {"route": "/a"})
    point = rotel.wait_for("lat", lambda p: p.count == len(values), route="/a")
    assert point is not None
    assert point.zero_count == 2
    assert point.sum == pytest.approx(sum(values))
    assert {_scale_of(low, high) for low, high, _ in point.buckets} == {4}
    for value in values[2:]:
        (bucket,) = [b for b in point.buckets if b[0] < value <= b[1]]
        expected = sum(1 for v in values[2:] if bucket[0] < v <= bucket[1])
        assert bucket[2] == expected, (value, bucket)
    # A value 2 ** 20 times the largest makes the SDK coarsen the scale: the
    # delta subtracts the previous point brought to the new scale.
    second = [*values, 1e6]
    for value in second:
        histogram.record(value, {"route": "/a"})
    runtime.shutdown()
    points = [p for p in rotel.points() if p.metric == "lat"]
    assert {p.temporality for p in points} == {temporality}
    last = points[-1]
    assert _scale_of(*last.buckets[0][:2]) < 4
    if temporality == "delta":
        assert sum(p.count or 0 for p in points) == len(values) + len(second)
        assert sum(p.zero_count or 0 for p in points) == 4
        (grown,) = [p for p in points if p.count == len(second)]
        assert sum(count for _, _, count in grown.buckets) == len(second) - 2
    else:
        assert last.count == len(values) + len(second)


@pytest.mark.peer
@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_exemplars_carry_the_span_to_the_collector(
    start_runtime: StartFn, rotel: Rotel, temporality: str
) -> None:
    """A measurement in a sampled span reaches rotel with that span's trace and
    span ids; a delta export carries it once, in the interval it was taken."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    runtime = start_runtime(
        exporter=otlp_exporter(
            rotel.http_endpoint,
            "http/protobuf",
            temporality=temporality,
        )
    )
    meter = runtime.get_meter("app")
    counter, histogram = meter.create_counter("hits"), meter.create_histogram("lat")
    with tracer.start_as_current_span("request") as span:
        counter.add(1, {"route": "/a"})
        histogram.record(0.25, {"route": "/a"})
    context = span.get_span_context()
    ids = (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    for name in ("hits", "lat"):
        point = rotel.wait_for(name, lambda p: bool(p.exemplars), route="/a")
        assert point is not None and point.exemplars == [ids], name
    # Three more exports with no new measurement: a delta point carries none; a
    # cumulative point keeps the latest exemplar (on the fast path: the SDK's
    # reservoirs start empty after each collection).
    seen = len(rotel.points())
    rotel.wait_for("hits", lambda _: len(rotel.points()) >= seen + 6, route="/a")
    runtime.shutdown()
    with_ids = [p for p in rotel.points() if p.metric == "hits" and p.exemplars]
    if temporality == "delta" or SDK_PATH:
        assert len(with_ids) == 1
    else:
        assert len(with_ids) >= 3
