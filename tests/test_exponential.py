"""
Exponential histograms: configuration, the SDK aggregation they select, the text
formats' count/sum, the protobuf exposition (decoded with Google's protobuf runtime)
and the native-histogram mapping.
"""

from __future__ import annotations

import math
import os
import random
import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import ExponentialHistogram, MetricsData
from prometheus_client.parser import text_string_to_metric_families

from conftest import StartFn, forking_group, get_when_served, prometheus_config
from prom_proto import PROTOBUF_ACCEPT, expand_spans, read_families
from ron_metrics import ConfigError, load_config
from ron_metrics.exporters.prometheus.native import ZERO_THRESHOLD
from ron_metrics.exporters.prometheus.render import Format
from ron_metrics.runtime import Runtime
from ron_metrics.testing import config_for_tests, reserved_port
from test_promtool import promtool_check

EXPONENTIAL = {"histogram_aggregation": "exponential"}


def _problems(**sections: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, service={"name": "x"}, **sections)
    return str(caught.value)


class TestConfiguration:
    def test_per_instrument_and_default_keys(self) -> None:
        """A rule's own aggregation, size and scale; the default for every histogram."""
        config = load_config(
            None,
            env={},
            service={"name": "x"},
            cardinality={
                "histogram_aggregation": "exponential",
                "histogram_max_size": 80,
                "instruments": {
                    "lat": {"max_scale": 5},
                    "old": {"aggregation": "explicit", "buckets": [1, 2]},
                },
            },
        )
        rules = {rule.pattern: rule for rule in config.cardinality.instruments}
        assert config.cardinality.histogram_max_size == 80
        assert rules["lat"].max_scale == 5
        assert rules["old"].aggregation == "explicit"

    def test_otel_variable_selects_the_default(self) -> None:
        name = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
        env = {name: "base2_exponential_bucket_histogram"}
        config = load_config(None, env=env, service={"name": "x"})
        assert config.cardinality.histogram_aggregation == "exponential"
        with pytest.raises(ConfigError, match=name):
            load_config(None, env={name: "summary"}, service={"name": "x"})

    def test_declarative_file_maps_both_places(self, tmp_path: Path) -> None:
        path = tmp_path / "otel.yaml"
        path.write_text(
            'file_format: "1.0"\n'
            "resource:\n  attributes:\n    - name: service.name\n      value: d\n"
            "meter_provider:\n"
            "  readers:\n"
            "    - periodic:\n"
            "        exporter:\n"
            "          otlp_http:\n"
            "            endpoint: http://127.0.0.1:4318/v1/metrics\n"
            "            default_histogram_aggregation: base2_exponential_bucket_histogram\n"
            "  views:\n"
            "    - selector:\n        instrument_name: lat\n"
            "      stream:\n        aggregation:\n"
            "          base2_exponential_bucket_histogram:\n"
            "            max_size: 64\n            max_scale: 6\n"
        )
        config = load_config(None, env={"OTEL_CONFIG_FILE": str(path)})
        assert config.cardinality.histogram_aggregation == "exponential"
        (rule,) = config.cardinality.instruments
        assert (rule.aggregation, rule.max_size, rule.max_scale) == (
            "exponential",
            64,
            6,
        )

    def test_conflicts_name_the_key(self) -> None:
        text = _problems(cardinality={"instruments": {"lat": {"max_size": 20}}})
        assert 'cardinality.instruments."lat".max_size' in text
        assert "exponential histograms only" in text
        text = _problems(
            cardinality={
                "instruments": {"lat": {"aggregation": "exponential", "buckets": [1]}}
            }
        )
        assert 'cardinality.instruments."lat".buckets' in text
        text = _problems(cardinality={"histogram_max_scale": 21})
        assert "cardinality.histogram_max_scale: must be from -4 to 20, got 21" in text
        text = _problems(cardinality={"histogram_max_size": 1})
        assert "cardinality.histogram_max_size: must be from 2 to 16384" in text
        text = _problems(cardinality={"histogram_aggregation": "native"})
        assert "cardinality.histogram_aggregation" in text

    def test_a_group_takes_exponential_histograms(self, tmp_path: Path) -> None:
        config = load_config(
            None,
            env={},
            service={"name": "x"},
            cardinality=EXPONENTIAL,
            multiprocess={"dir": str(tmp_path)},
        )
        assert config.cardinality.histogram_aggregation == "exponential"


def _collect(runtime: Runtime) -> MetricsData:
    data = runtime._hub.capture()
    assert data is not None
    return data


def _metric(data: MetricsData, name: str) -> Any:
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric
    raise AssertionError(f"{name} not collected")


def test_the_sdk_aggregation_honours_size_and_scale(start_runtime: StartFn) -> None:
    """max_scale caps the scale; max_size makes the SDK downscale to fit."""
    runtime = start_runtime(
        cardinality={
            "instruments": {
                "capped": {"aggregation": "exponential", "max_scale": 3},
                "narrow": {"aggregation": "exponential", "max_size": 4},
            }
        }
    )
    meter = runtime.get_meter("app")
    for name in ("capped", "narrow"):
        histogram = meter.create_histogram(name)
        for value in (1.0, 1.5, 3.0, 1000.0):
            histogram.record(value)
    data = _collect(runtime)
    capped = _metric(data, "capped")
    assert isinstance(capped.data, ExponentialHistogram)
    (point,) = capped.data.data_points
    assert point.scale == 3 and point.count == 4
    (narrow,) = _metric(data, "narrow").data.data_points
    assert len(narrow.positive.bucket_counts) <= 4
    # 1 … 1000 spans ten powers of two: four buckets need a scale of -2.
    assert narrow.scale == -2


def _workload(runtime: Runtime) -> dict[str, Any]:
    meter = runtime.get_meter("shop", "1.2")
    counter = meter.create_counter("orders", description="Orders.")
    counter.add(3, {"shop": "eu", "code": 200})
    counter.add(2.5, {"shop": "us", "code": 404, "retry": True})
    meter.create_up_down_counter("queue").add(-4)
    gauge = meter.create_gauge("temperature", unit="Cel")
    gauge.set(21.5, {"room": "a"})
    classic = meter.create_histogram("classic", unit="s")
    fine = meter.create_histogram("fine", unit="s", description="Latency.")
    values = [0.0, 0.0, 1e-9, 0.003, 0.02, 0.02, 0.5, 1.0, 2.0, 7.5, 3600.0]
    for value in values:
        classic.record(value, {"route": "/a"})
        fine.record(value, {"route": "/a"})
    fine.record(0.25, {"route": "/b"})
    return {"values": values}


def _served(start_runtime: StartFn, **prometheus: Any) -> Runtime:
    return start_runtime(
        exporter=prometheus_config(**prometheus),
        cardinality={"instruments": {"fine": {"aggregation": "exponential"}}},
    )


_WORKLOAD_FAMILIES = (
    "orders_total",
    "queue",
    "temperature_celsius",
    "classic_seconds",
    "fine_seconds",
    "target_info",
)


def _ours(sample_name: str) -> bool:
    # The workload's families (self-metrics change between two scrapes).
    return any(
        sample_name in (name, f"{name}_bucket", f"{name}_count", f"{name}_sum")
        for name in _WORKLOAD_FAMILIES
    )


class TestProtobufExposition:
    def test_every_family_decodes_and_agrees_with_the_text(
        self, start_runtime: StartFn
    ) -> None:
        """Counters, gauges, classic and native histograms, target_info: the
        protobuf scrape decodes with Google's parser and carries the text's values."""
        runtime = _served(start_runtime)
        _workload(runtime)
        url = f"{runtime.address}/metrics"
        proto = httpx.get(url, headers={"Accept": PROTOBUF_ACCEPT}, timeout=10)
        assert proto.status_code == 200
        assert proto.headers["content-type"] == Format.PROTOBUF.content_type
        assert proto.headers["vary"] == "Accept, Accept-Encoding"
        families = {family.name: family for family in read_families(proto.content)}
        text = httpx.get(url, timeout=10).text
        # An empty label is an absent one to Prometheus: the text pads a series
        # with the labels of its family's other series, the protobuf does not.
        samples = {
            (
                sample.name,
                frozenset(p for p in sample.labels.items() if p[1]),
            ): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        decoded: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in families.values():
            for metric in family.metric:
                labels = frozenset((pair.name, pair.value) for pair in metric.label)
                if family.type in (0, 1):  # counter, gauge
                    value = (
                        metric.counter.value if family.type == 0 else metric.gauge.value
                    )
                    decoded[(family.name, labels)] = value
                    continue
                histogram = metric.histogram
                decoded[(family.name + "_count", labels)] = histogram.sample_count
                decoded[(family.name + "_sum", labels)] = histogram.sample_sum
                for bucket in histogram.bucket:
                    le = frozenset([*labels, ("le", repr(bucket.upper_bound))])
                    decoded[(family.name + "_bucket", le)] = bucket.cumulative_count
        # Every text sample but the +Inf buckets (Prometheus adds those from the
        # count) is in the protobuf scrape with the same value, and nothing else.
        expected = {
            key: value
            for key, value in samples.items()
            if ("le", "+Inf") not in key[1] and _ours(key[0])
        }
        assert {k: v for k, v in decoded.items() if _ours(k[0])} == expected
        assert families["orders_total"].type == 0
        assert families["target_info"].type == 1
        assert {pair.name for pair in families["orders_total"].metric[0].label} >= {
            "shop",
            "code",
        }

    def test_the_native_histogram_is_the_sdk_point(
        self, start_runtime: StartFn
    ) -> None:
        """Schema, zero threshold and count, spans and deltas of the SDK's own point."""
        runtime = _served(start_runtime)
        values = _workload(runtime)["values"]
        url = f"{runtime.address}/metrics"
        body = httpx.get(url, headers={"Accept": PROTOBUF_ACCEPT}, timeout=10).content
        (family,) = [f for f in read_families(body) if f.name == "fine_seconds"]
        by_route = {metric.label[0].value: metric.histogram for metric in family.metric}
        native = by_route["/a"]
        assert native.sample_count == len(values)
        assert native.sample_sum == pytest.approx(math.fsum(values))
        assert native.zero_count == 2
        assert native.zero_threshold == ZERO_THRESHOLD
        assert len(native.bucket) == 0
        buckets = expand_spans(native.positive_span, native.positive_delta)
        assert sum(buckets.values()) == len(values) - 2
        # Each value v is counted in Prometheus bucket k: base ** (k - 1) < v <= base ** k,
        # k = ceil(log2(v) * 2 ** schema) (powers of two land on a boundary exactly).
        expected: dict[int, int] = {}
        for value in values[2:]:
            k = math.ceil(math.log2(value) * 2**native.schema)
            expected[k] = expected.get(k, 0) + 1
        assert buckets == expected
        assert by_route["/b"].sample_count == 1

    def test_gzip_and_size_bound_apply(self, start_runtime: StartFn) -> None:
        runtime = _served(start_runtime)
        _workload(runtime)
        url = f"{runtime.address}/metrics"
        plain = httpx.get(url, headers={"Accept": PROTOBUF_ACCEPT}, timeout=10)
        zipped = httpx.get(
            url,
            headers={"Accept": PROTOBUF_ACCEPT, "Accept-Encoding": "gzip"},
            timeout=10,
        )
        assert zipped.headers["content-encoding"] == "gzip"
        # httpx decodes gzip on the fly.
        names = {f.name for f in read_families(zipped.content)}
        assert names >= {"orders_total", "fine_seconds", "classic_seconds"}
        assert names >= {f.name for f in read_families(plain.content)} - {
            "exposition_latency_seconds"
        }

    def test_the_reference_encoder_answers_text(self, start_runtime: StartFn) -> None:
        runtime = _served(start_runtime, encoder="reference")
        _workload(runtime)
        response = httpx.get(
            f"{runtime.address}/metrics",
            headers={"Accept": PROTOBUF_ACCEPT},
            timeout=10,
        )
        assert response.headers["content-type"] == Format.OPENMETRICS.content_type


@pytest.mark.peer
def test_text_formats_carry_count_and_sum_promtool_clean(
    start_runtime: StartFn,
) -> None:
    """A text scrape of an exponential histogram: +Inf bucket, count and sum only."""
    runtime = _served(start_runtime)
    values = _workload(runtime)["values"]
    text = httpx.get(f"{runtime.address}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith("fine_seconds")]
    assert sorted(lines) == sorted(
        [
            f'fine_seconds_bucket{{le="+Inf",route="/a"}} {float(len(values))}',
            f'fine_seconds_count{{route="/a"}} {float(len(values))}',
            f'fine_seconds_sum{{route="/a"}} {math.fsum(values)!r}',
            'fine_seconds_bucket{le="+Inf",route="/b"} 1.0',
            'fine_seconds_count{route="/b"} 1.0',
            'fine_seconds_sum{route="/b"} 0.25',
        ]
    )
    check = promtool_check(text)
    assert check.returncode == 0, check.stdout + check.stderr


def test_config_for_tests_accepts_exponential_default() -> None:
    config = config_for_tests(cardinality=EXPONENTIAL)
    assert config.cardinality.histogram_aggregation == "exponential"


GROUP_FORKING = textwrap.dedent(
    """
    import os, random, sys, time
    import ron_metrics
    from opentelemetry import metrics
    port, directory, fast = sys.argv[1], sys.argv[2], sys.argv[3] == "fast"
    runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "f"},
        exporter={"prometheus": {"bind": f"127.0.0.1:{port}"}},
        multiprocess={"dir": directory}, sdk={"fast_path": fast},
        cardinality={"instruments": {"lat": {"aggregation": "exponential",
                                             "max_size": 20}}}))
    latency = metrics.get_meter("app").create_histogram("lat")

    def values(seed):
        generator = random.Random(seed)
        # Zeros, and values over two decades (the parent: a fine scale) or twelve
        # (the children: windows move, scales coarsen).
        wide = 6 if seed else 1
        return [0.0 if generator.random() < 0.1 else
                10 ** generator.uniform(-wide, wide) for _ in range(300)]

    for value in values(0):
        latency.record(value)
    children = []
    for n in range(1, 4):
        pid = os.fork()
        if pid == 0:
            for value in values(n):
                latency.record(value)
            os.write(1, f"child {os.getpid()}\\n".encode())  # one write: one line
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def _group_values(seed: int) -> list[float]:
    generator = random.Random(seed)  # noqa: S311 - test data, not secrets
    wide = 6 if seed else 1
    return [
        0.0 if generator.random() < 0.1 else 10 ** generator.uniform(-wide, wide)
        for _ in range(300)
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("path", ["fast", "sdk"])
def test_a_group_merges_exponential_histograms_exactly(
    tmp_path: Path, path: str
) -> None:
    """Four processes (one killed) record over twelve decades with max_size 20: the
    served native histogram holds every value in its bucket, the count, zero count
    and sum of all four."""
    port = reserved_port()
    with forking_group(GROUP_FORKING, str(port), str(tmp_path / "group"), path) as pids:
        os.kill(pids[0], signal.SIGKILL)  # its counts stay in the group's totals
        body = get_when_served(f"http://127.0.0.1:{port}/metrics")
        scraped = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": PROTOBUF_ACCEPT},
            timeout=30,
        ).content
    assert body.status_code == 200
    (family,) = [f for f in read_families(scraped) if f.name == "lat"]
    (metric,) = family.metric
    native = metric.histogram
    recorded = [value for seed in range(4) for value in _group_values(seed)]
    assert native.sample_count == len(recorded)
    assert native.zero_count == sum(1 for value in recorded if value == 0)
    assert native.sample_sum == pytest.approx(math.fsum(recorded), rel=1e-12)
    expected: dict[int, int] = {}
    for value in recorded:
        if value:
            k = math.ceil(math.log2(value) * 2**native.schema)
            expected[k] = expected.get(k, 0) + 1
    assert expand_spans(native.positive_span, native.positive_delta) == expected
    assert len(expected) <= 20  # the merge kept max_size
