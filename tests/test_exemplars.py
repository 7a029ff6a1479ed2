"""
Exemplars: kept for sampled spans on both paths (bound handles included), bounded
per series, written in OpenMetrics and protobuf scrapes, never in text 0.0.4.

The exposition is checked with prometheus_client's OpenMetrics parser (which
validates the exemplar syntax and its 128-character label limit) and with the
protobuf oracle; the ids against the span the test opened.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import ron_metrics
from conftest import SDK_PATH, StartFn, prometheus_config, stop_process
from prom_proto import PROTOBUF_ACCEPT, read_families
from ron_metrics.runtime import Runtime
from test_http_middleware import serve
from test_prometheus_server import _prometheus_for  # noqa: F401 - the prometheus_for fixture, used by name

OPENMETRICS = "application/openmetrics-text;version=1.0.0"
TEXT = "text/plain;version=0.0.4"

_sampled = TracerProvider().get_tracer("test")
_unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")


def _start(start_runtime: StartFn, exemplar_filter: str = "trace_based") -> Runtime:
    return start_runtime(
        exporter=prometheus_config(),
        sdk={"exemplar_filter": exemplar_filter},
        cardinality={
            "instruments": {
                "lat": {"buckets": [0.1, 1.0]},
                "spread": {"aggregation": "exponential", "max_size": 8},
            }
        },
    )


def _scrape(runtime: Runtime, accept: str) -> httpx.Response:
    return httpx.get(
        f"{runtime.address}/metrics", headers={"Accept": accept}, timeout=10
    )


def _exemplars(runtime: Runtime) -> dict[tuple[str, str], Any]:
    """(sample name, le or "") -> the exemplar prometheus_client parsed."""
    found: dict[tuple[str, str], Any] = {}
    body = _scrape(runtime, OPENMETRICS).text
    for family in text_string_to_metric_families(body):  # type: ignore[no-untyped-call]  # untyped upstream
        for sample in family.samples:
            if sample.exemplar is not None:
                found[(sample.name, sample.labels.get("le", ""))] = sample.exemplar
    return found


def _ids(span: Any) -> dict[str, str]:
    context = span.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }


@pytest.fixture(name="traced")
def _traced() -> Iterator[Any]:
    with _sampled.start_as_current_span("request") as span:
        yield span


class TestTraceBased:
    def test_sampled_span_marks_counter_and_each_bucket(
        self, start_runtime: StartFn
    ) -> None:
        """Counter and histogram keep the span's ids; each bucket its latest value."""
        runtime = _start(start_runtime)
        meter = runtime.get_meter("app")
        counter, histogram = meter.create_counter("hits"), meter.create_histogram("lat")
        with _sampled.start_as_current_span("first"):
            histogram.record(0.05, {"route": "/a"})
        with _sampled.start_as_current_span("second") as span:
            counter.add(3, {"route": "/a"})
            histogram.record(0.07, {"route": "/a"})
            histogram.record(5.0, {"route": "/a"})
        found = _exemplars(runtime)
        assert found[("hits_total", "")].labels == _ids(span)
        assert found[("hits_total", "")].value == 3
        assert found[("lat_bucket", "0.1")].labels == _ids(span)
        assert found[("lat_bucket", "0.1")].value == 0.07
        assert found[("lat_bucket", "+Inf")].value == 5.0
        assert ("lat_bucket", "1.0") not in found

    def test_no_span_and_unsampled_span_keep_none(self, start_runtime: StartFn) -> None:
        """Without a sampled span nothing is kept, on counters or histograms."""
        runtime = _start(start_runtime)
        meter = runtime.get_meter("app")
        meter.create_counter("hits").add(1)
        meter.create_histogram("lat").record(0.5)
        with _unsampled.start_as_current_span("dropped"):
            meter.create_counter("hits").add(1)
            meter.create_histogram("lat").record(0.5)
        body = _scrape(runtime, OPENMETRICS).text
        assert "hits_total 2.0\n" in body
        assert " # {" not in body

    def test_sampled_after_unsampled_is_kept(self, start_runtime: StartFn) -> None:
        """Alternating unsampled and sampled requests: every sampled one is kept,
        whatever verdict the measurement before it had."""
        runtime = _start(start_runtime)
        counter = runtime.get_meter("app").create_counter("hits")
        for round_ in range(3):
            with _unsampled.start_as_current_span("quiet"):
                counter.add(1)
                counter.add(1)
            with _sampled.start_as_current_span("kept") as span:
                counter.add(round_ + 10)
            with _unsampled.start_as_current_span("quiet"):
                counter.add(1)
            exemplar = _exemplars(runtime)[("hits_total", "")]
            assert (exemplar.labels, exemplar.value) == (_ids(span), round_ + 10)

    def test_text_format_carries_none(
        self, start_runtime: StartFn, traced: Any
    ) -> None:
        """Text 0.0.4 has no exemplars; the same scrape in OpenMetrics has them."""
        runtime = _start(start_runtime)
        runtime.get_meter("app").create_counter("hits").add(1)
        assert " # {" not in _scrape(runtime, TEXT).text
        assert (
            f'trace_id="{_ids(traced)["trace_id"]}"'
            in _scrape(runtime, OPENMETRICS).text
        )

    def test_bound_handles_keep_them(self, start_runtime: StartFn, traced: Any) -> None:
        """Handles from ron_metrics.bind keep exemplars as the instruments do."""
        runtime = _start(start_runtime)
        meter = runtime.get_meter("app")
        ron_metrics.bind(meter.create_counter("hits"), {"q": "x"}).add(2)
        ron_metrics.bind(meter.create_histogram("lat"), {"q": "x"}).record(0.5)
        found = _exemplars(runtime)
        assert found[("hits_total", "")].labels == _ids(traced)
        assert found[("lat_bucket", "1.0")].labels == _ids(traced)

    def test_exemplars_per_series_are_bounded(
        self, start_runtime: StartFn, traced: Any
    ) -> None:
        """Ten thousand sampled measurements keep one per bucket (explicit), one per
        counter and at most min(20, max_size) on an exponential histogram."""
        runtime = _start(start_runtime)
        meter = runtime.get_meter("app")
        counter, histogram = meter.create_counter("hits"), meter.create_histogram("lat")
        spread = meter.create_histogram("spread")
        for i in range(10_000):
            counter.add(1)
            histogram.record(i / 1000)
            spread.record(1 + i % 7)
        data = runtime._hub.capture()
        assert data is not None
        kept = {
            metric.name: list(metric.data.data_points[0].exemplars)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name in {"hits", "lat", "spread"}
        }
        assert len(kept["hits"]) == 1
        assert len(kept["lat"]) == 3  # one per bucket: (0, 0.1], (0.1, 1], (1, +Inf)
        assert 1 <= len(kept["spread"]) <= 8
        assert {e.trace_id for values in kept.values() for e in values} == {
            traced.get_span_context().trace_id
        }


class TestFilters:
    def test_always_on_keeps_without_a_span(self, start_runtime: StartFn) -> None:
        """always_on keeps a measurement made outside any span, with no ids."""
        runtime = _start(start_runtime, "always_on")
        runtime.get_meter("app").create_counter("hits").add(4)
        exemplar = _exemplars(runtime)[("hits_total", "")]
        assert (exemplar.labels, exemplar.value) == ({}, 4)

    def test_always_off_keeps_none_in_a_sampled_span(
        self, start_runtime: StartFn, traced: Any
    ) -> None:
        """always_off keeps nothing, sampled span or not."""
        runtime = _start(start_runtime, "always_off")
        runtime.get_meter("app").create_counter("hits").add(1)
        runtime.get_meter("app").create_histogram("lat").record(0.5)
        assert " # {" not in _scrape(runtime, OPENMETRICS).text


class TestProtobuf:
    def test_counter_buckets_and_native_histogram_carry_them(
        self, start_runtime: StartFn, traced: Any
    ) -> None:
        """The protobuf scrape: the counter's exemplar, a bucket's (an explicit
        +Inf bucket when the value lies past every bound), and the native
        histogram's list."""
        runtime = _start(start_runtime)
        meter = runtime.get_meter("app")
        meter.create_counter("hits").add(1)
        meter.create_histogram("lat").record(0.05)
        meter.create_histogram("lat").record(9.0)
        meter.create_histogram("spread").record(3.0)
        response = _scrape(runtime, PROTOBUF_ACCEPT)
        families = {f.name: f for f in read_families(response.content)}
        ids = _ids(traced)

        def labels(exemplar: Any) -> dict[str, str]:
            return {pair.name: pair.value for pair in exemplar.label}

        counter = families["hits_total"].metric[0].counter
        assert labels(counter.exemplar) == ids
        assert counter.exemplar.timestamp.seconds > 0
        buckets = families["lat"].metric[0].histogram.bucket
        marked = {
            b.upper_bound: b.exemplar.value for b in buckets if b.HasField("exemplar")
        }
        assert marked == {0.1: 0.05, math.inf: 9.0}
        assert buckets[-1].cumulative_count == 2
        native = families["spread"].metric[0].histogram
        assert [(labels(e), e.value) for e in native.exemplars] == [(ids, 3.0)]


@pytest.mark.skipif(SDK_PATH, reason="the fast path's own call shapes")
def test_explicit_context_argument_decides(start_runtime: StartFn) -> None:
    """A context passed to add() is used instead of the current one."""
    runtime = _start(start_runtime)
    counter = runtime.get_meter("app").create_counter("hits")
    with _sampled.start_as_current_span("elsewhere") as span:
        from opentelemetry.context import get_current

        context = get_current()
    counter.add(1, None, context)
    assert _exemplars(runtime)[("hits_total", "")].labels == _ids(span)


def _stored_exemplars(base: str, metric: str) -> list[dict[str, Any]]:
    now = time.time()
    response = httpx.get(
        f"{base}/api/v1/query_exemplars",
        params={"query": metric, "start": now - 600, "end": now + 60},
        timeout=5,
    )
    series: list[dict[str, Any]] = response.json().get("data") or []
    return [e for one in series for e in one["exemplars"]]


@pytest.mark.peer
def test_prometheus_stores_the_trace_of_a_request(prometheus_for: Any) -> None:
    """End to end: the traced FastAPI example, scraped by a real Prometheus with
    exemplar storage, answers query_exemplars with the trace of our request."""
    process, app, metrics = serve("fastapi")
    try:
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        response = httpx.get(
            f"{app}/items/7", headers={"traceparent": traceparent}, timeout=10
        )
        assert response.status_code == 200
        base = prometheus_for(
            metrics.removeprefix("http://"), features=("exemplar-storage",)
        )
        metric = "http_server_request_duration_seconds_bucket"
        deadline = time.monotonic() + 45
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not found:
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                found = [
                    e
                    for e in _stored_exemplars(base, metric)
                    if e["labels"].get("trace_id") == trace_id
                ]
        assert found, f"no exemplar with trace {trace_id} in Prometheus"
        assert 0 < float(found[0]["value"]) < 10
    finally:
        stop_process(process)
