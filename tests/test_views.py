from __future__ import annotations

from typing import Any

import pytest

from ron_metrics import ConfigError
from ron_metrics.testing import (
    config_for_tests,
    runtime_for_tests,
    sample_value,
    samples,
)
from ron_metrics.views import build_views

_SCOPE = __import__(
    "opentelemetry.sdk.util.instrumentation", fromlist=["InstrumentationScope"]
).InstrumentationScope("app")


def _no_reservoir(_aggregation_type: Any) -> Any:
    # The SDK's reservoir factory: a builder per aggregation type.
    return lambda **_kwargs: None


def series(runtime: Any, name: str) -> list[frozenset[tuple[str, str]]]:
    return [
        labels for (sample, labels), _ in samples(runtime).items() if sample == name
    ]


class TestAllowlists:
    def test_default_allowlist_keeps_listed_attributes_only(self) -> None:
        """With default_attributes, unlisted attributes are dropped and counts merge."""
        config = config_for_tests(cardinality={"default_attributes": ["route"]})
        with runtime_for_tests(config) as runtime:
            counter = runtime.get_meter("app").create_counter("hits")
            for user in range(5):
                counter.add(1, {"route": "/a", "user.id": f"u{user}"})
            assert sample_value(runtime, "hits_total", route="/a") == 5
            assert all(
                "user_id" not in dict(labels)
                for labels in series(runtime, "hits_total")
            )

    def test_instrument_rule_beats_default(self) -> None:
        """A per-instrument rule replaces the default allowlist for that instrument."""
        config = config_for_tests(
            cardinality={
                "default_attributes": ["route"],
                "instruments": {"jobs": {"attributes": ["queue"]}},
            }
        )
        with runtime_for_tests(config) as runtime:
            meter = runtime.get_meter("app")
            meter.create_counter("jobs").add(2, {"queue": "q1", "route": "/x"})
            meter.create_counter("hits").add(3, {"queue": "q1", "route": "/x"})
            (jobs,) = series(runtime, "jobs_total")
            (hits,) = series(runtime, "hits_total")
            assert ("queue", "q1") in jobs and ("route", "/x") not in jobs
            assert ("route", "/x") in hits and ("queue", "q1") not in hits

    def test_exact_name_beats_glob_and_one_stream_each(self) -> None:
        """An exact rule wins over a matching glob; the instrument is exported once."""
        config = config_for_tests(
            cardinality={
                "instruments": {
                    "http.*": {"attributes": ["method"]},
                    "http.requests": {"attributes": ["status"]},
                }
            }
        )
        with runtime_for_tests(config) as runtime:
            meter = runtime.get_meter("app")
            meter.create_counter("http.requests").add(
                1, {"method": "GET", "status": "200"}
            )
            meter.create_counter("http.errors").add(
                1, {"method": "GET", "status": "500"}
            )
            requests = series(runtime, "http_requests_total")
            errors = series(runtime, "http_errors_total")
            assert len(requests) == 1 and ("status", "200") in requests[0]
            assert ("method", "GET") not in requests[0]
            assert len(errors) == 1 and ("method", "GET") in errors[0]

    def test_drop_rule_removes_instrument(self) -> None:
        """drop = true removes the instrument from every export."""
        config = config_for_tests(
            cardinality={"instruments": {"debug.*": {"drop": True}}}
        )
        with runtime_for_tests(config) as runtime:
            meter = runtime.get_meter("app")
            meter.create_counter("debug.noise").add(1)
            meter.create_counter("kept").add(1)
            names = {name for name, _ in samples(runtime)}
            assert "kept_total" in names
            assert not any(name.startswith("debug_noise") for name in names)

    def test_self_metrics_keep_their_labels(self) -> None:
        """Our own families keep their labels even under a strict default allowlist."""
        config = config_for_tests(cardinality={"default_attributes": []})
        with runtime_for_tests(config) as runtime:
            assert sample_value(runtime, "rejected_total", reason="method") == 0

    def test_rules_never_capture_self_metrics(self) -> None:
        """A catch-all rule with an empty allowlist leaves our own labels alone."""
        config = config_for_tests(
            cardinality={"instruments": {"*": {"attributes": []}}}
        )
        with runtime_for_tests(config) as runtime:
            runtime.get_meter("app").create_counter("x").add(1, {"k": "v"})
            assert sample_value(runtime, "rejected_total", reason="method") == 0
            assert sample_value(runtime, "x_total") == 1


class TestCardinality:
    @pytest.mark.parametrize(("limit", "extra"), [(10, 1), (10, 25), (50, 200)])
    def test_series_bounded_with_overflow_and_counted(
        self, limit: int, extra: int
    ) -> None:
        """max_series + N attribute sets give max_series series plus one overflow series."""
        config = config_for_tests(cardinality={"max_series": limit})
        with runtime_for_tests(config) as runtime:
            counter = runtime.get_meter("app").create_counter("bomb")
            for index in range(limit + extra):
                counter.add(1, {"key": f"v{index}"})
            rows = series(runtime, "bomb_total")
            overflow = [
                labels for labels in rows if ("otel_metric_overflow", "true") in labels
            ]
            assert len(rows) == limit + 1
            assert len(overflow) == 1
            values = samples(runtime)
            total = sum(v for (name, _), v in values.items() if name == "bomb_total")
            assert total == limit + extra  # nothing lost: overflow keeps the counts
            # Every add(1) that landed in the overflow series is counted, and the
            # count is visible in the same scrape that shows the overflow series.
            rejected = sample_value(runtime, "rejected_total", reason="cardinality")
            assert rejected == extra

    def test_per_instrument_max_series(self) -> None:
        """An instrument rule's max_series overrides the global bound."""
        config = config_for_tests(
            cardinality={"max_series": 100, "instruments": {"small": {"max_series": 3}}}
        )
        with runtime_for_tests(config) as runtime:
            counter = runtime.get_meter("app").create_counter("small")
            for index in range(10):
                counter.add(1, {"k": str(index)})
            assert len(series(runtime, "small_total")) == 4

    def test_rule_without_max_series_keeps_the_global_bound(self) -> None:
        """A rule that sets only attributes is still bounded by the global max_series."""
        config = config_for_tests(
            cardinality={
                "max_series": 3,
                "instruments": {"wide": {"attributes": ["k"]}},
            }
        )
        with runtime_for_tests(config) as runtime:
            counter = runtime.get_meter("app").create_counter("wide")
            for index in range(10):
                counter.add(1, {"k": str(index), "dropped": "x"})
            rows = series(runtime, "wide_total")
            assert len(rows) == 4
            assert any(("otel_metric_overflow", "true") in row for row in rows)

    def test_overflow_counts_in_the_first_scrape_and_keep_adding(self) -> None:
        """50 refused adds read as 50 at once; 2 refused recordings make 52, once."""
        config = config_for_tests(cardinality={"max_series": 5})
        with runtime_for_tests(config) as runtime:
            counter = runtime.get_meter("app").create_counter("bomb")
            histogram = runtime.get_meter("app").create_histogram("wait")
            for index in range(55):
                counter.add(1, {"user": str(index)})
            assert sample_value(runtime, "rejected_total", reason="cardinality") == 50
            for index in range(7):
                histogram.record(0.1, {"user": str(index + 100)})
            for index in range(5):
                counter.add(1, {"user": str(index)})  # existing series: not refused
            assert sample_value(runtime, "rejected_total", reason="cardinality") == 52
            assert sample_value(runtime, "rejected_total", reason="cardinality") == 52

    def test_no_overflow_no_rejection(self) -> None:
        """Below the bound, rejected_total{reason="cardinality"} stays at zero."""
        with runtime_for_tests() as runtime:
            counter = runtime.get_meter("app").create_counter("calm")
            for index in range(5):
                counter.add(1, {"k": str(index)})
            samples(runtime)
            assert sample_value(runtime, "rejected_total", reason="cardinality") == 0


class TestBuildViews:
    def test_sdk_refusal_becomes_config_error(self) -> None:
        """A view the SDK refuses surfaces as ConfigError, not a bare Exception."""
        from ron_metrics.config import CardinalityConfig, InstrumentRule

        bad = CardinalityConfig(
            instruments=(InstrumentRule(pattern="x", max_series=0),)
        )
        with pytest.raises(ConfigError, match="refused a view") as caught:
            build_views(bad)
        assert caught.value.keys == ("cardinality",)


def _written(views: list[Any], tmp_path: Any) -> dict[str, tuple[float, ...]]:
    """Measure through an SDK provider with ``views``; what reached a group store."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from ron_metrics.multiprocess.aggregation import CURRENT
    from ron_metrics.multiprocess.store import MemberStore, parse_records
    from ron_metrics.views import SELF_METER_NAME

    store = MemberStore(str(tmp_path / "member-1-1.db"))
    CURRENT.store = store
    try:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], views=views)
        provider.get_meter("app").create_counter("jobs").add(2, {"k": "v", "x": "y"})
        provider.get_meter("app").create_histogram("lat", unit="s").record(0.3)
        provider.get_meter(SELF_METER_NAME).create_counter("own").add(1, {"r": "a"})
        points = reader.get_metrics_data()
        assert points is not None
        for metric in points.resource_metrics[0].scope_metrics[0].metrics:
            for point in metric.data.data_points:
                assert point.start_time_unix_nano > 0
        provider.shutdown()
    finally:
        CURRENT.store = None
    records = parse_records((tmp_path / "member-1-1.db").read_bytes())
    written = {key.split(",")[2].strip('"'): values for key, values in records}
    store.close()
    return written


class TestSharedViews:
    def test_group_views_write_every_stream_through(self, tmp_path: Any) -> None:
        """shared=True: defaults, rules and our own meter all reach the store."""
        from ron_metrics.config import CardinalityConfig, InstrumentRule

        cardinality = CardinalityConfig(
            default_attributes=("k",),
            instruments=(InstrumentRule(pattern="lat", buckets=(0.1, 1.0)),),
        )
        written = _written(build_views(cardinality, shared=True), tmp_path)
        assert written["jobs"] == (2.0,)
        assert written["lat"] == (
            0.3,
            0.3,
            0.3,
            0.0,
            1.0,
            0.0,
        )  # sum, min, max, buckets
        assert written["own"] == (1.0,)

    def test_single_process_views_write_nothing(self, tmp_path: Any) -> None:
        """Without a group nothing is written through, whatever store is current."""
        from ron_metrics.config import CardinalityConfig

        assert _written(build_views(CardinalityConfig()), tmp_path) == {}

    def test_exemplar_reservoirs_are_kept_by_default(self) -> None:
        """Only an explicit exemplars=False replaces the reservoirs."""
        from ron_metrics.config import CardinalityConfig

        kept = build_views(CardinalityConfig())[-1]
        dropped = build_views(CardinalityConfig(), exemplars=False)[-1]
        assert "exemplar_reservoir_factory" not in vars(kept).get("_kwargs", {})
        assert (
            kept._exemplar_reservoir_factory is not dropped._exemplar_reservoir_factory
        )


def bucket_bounds(runtime: Any, name: str) -> list[str]:
    return [
        dict(labels)["le"]
        for (sample, labels), _ in samples(runtime).items()
        if sample == f"{name}_bucket"
    ]


class TestHistogramBuckets:
    def test_seconds_instrument_gets_seconds_buckets(self) -> None:
        """A histogram in seconds without advice gets the 0.005 … 10 s buckets."""
        with runtime_for_tests(config_for_tests()) as runtime:
            runtime.get_meter("app").create_histogram("wait", unit="s").record(0.3)
            assert bucket_bounds(runtime, "wait_seconds")[:3] == [
                "0.005",
                "0.01",
                "0.025",
            ]
            assert bucket_bounds(runtime, "wait_seconds")[-2:] == ["10.0", "+Inf"]
            assert sample_value(runtime, "wait_seconds_bucket", le="0.25") == 0
            assert sample_value(runtime, "wait_seconds_bucket", le="0.5") == 1

    def test_advice_beats_the_unit_default(self) -> None:
        """Advisory boundaries given by the instrument are kept."""
        with runtime_for_tests(config_for_tests()) as runtime:
            runtime.get_meter("app").create_histogram(
                "wait", unit="s", explicit_bucket_boundaries_advisory=[0.5, 2.0]
            ).record(1.0)
            assert bucket_bounds(runtime, "wait_seconds") == ["0.5", "2.0", "+Inf"]

    def test_configured_buckets_beat_advice(self) -> None:
        """buckets under an instrument rule win over advice and unit defaults."""
        config = config_for_tests(
            cardinality={"instruments": {"wait*": {"buckets": [1, 2, 3]}}}
        )
        with runtime_for_tests(config) as runtime:
            runtime.get_meter("app").create_histogram(
                "wait", unit="s", explicit_bucket_boundaries_advisory=[0.5]
            ).record(2.5)
            assert bucket_bounds(runtime, "wait_seconds") == [
                "1.0",
                "2.0",
                "3.0",
                "+Inf",
            ]
            assert sample_value(runtime, "wait_seconds_bucket", le="3.0") == 1

    def test_other_units_keep_the_sdk_default(self) -> None:
        """Milliseconds keep the SDK's millisecond-scale default boundaries."""
        with runtime_for_tests(config_for_tests()) as runtime:
            runtime.get_meter("app").create_histogram("wait", unit="ms").record(30)
            assert "10000.0" in bucket_bounds(runtime, "wait_milliseconds")

    @pytest.mark.parametrize(
        ("buckets", "fragment"),
        [
            ([], "non-empty list"),
            ([2, 1], "strictly increasing"),
            ([1, 1], "strictly increasing"),
            (["1"], "numbers"),
            ("0.1, 0.5", "non-empty list"),
        ],
    )
    def test_bad_buckets_are_refused(self, buckets: object, fragment: str) -> None:
        """Bucket lists must be non-empty, numeric and increasing; the key is named."""
        with pytest.raises(ConfigError) as caught:
            config_for_tests(cardinality={"instruments": {"x": {"buckets": buckets}}})
        assert caught.value.keys == ('cardinality.instruments."x".buckets',)
        assert fragment in str(caught.value)


class TestExponentialViews:
    def _aggregation(self, cardinality: dict[str, Any], name: str) -> Any:
        from opentelemetry.sdk.metrics import Histogram as SdkHistogram
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram

        views = build_views(config_for_tests(cardinality=cardinality).cardinality)
        instrument = _Histogram(
            name,
            instrumentation_scope=_SCOPE,
            measurement_consumer=None,  # type: ignore[arg-type]  # never measured
            unit="s",
        )
        assert isinstance(instrument, SdkHistogram)
        (view,) = [view for view in views if view._match(instrument)]
        return view._aggregation._create_aggregation(instrument, {}, _no_reservoir, 0)

    def test_a_rule_or_the_default_picks_exponential_with_its_shape(self) -> None:
        from opentelemetry.sdk.metrics._internal.aggregation import (
            _ExplicitBucketHistogramAggregation,
            _ExponentialBucketHistogramAggregation,
        )

        rules = {
            "fine": {"aggregation": "exponential", "max_size": 40, "max_scale": 5},
            "plain": {"aggregation": "explicit", "buckets": [1.0]},
            "sized": {"max_size": 12},
        }
        default = {
            "histogram_aggregation": "exponential",
            "histogram_max_size": 64,
            "histogram_max_scale": 3,
            "instruments": rules,
        }
        fine = self._aggregation(default, "fine")
        assert isinstance(fine, _ExponentialBucketHistogramAggregation)
        assert (fine._max_size, fine._max_scale) == (40, 5)
        other = self._aggregation(default, "other")
        assert (other._max_size, other._max_scale) == (64, 3)
        sized = self._aggregation(default, "sized")
        assert (sized._max_size, sized._max_scale) == (12, 3)
        plain = self._aggregation(default, "plain")
        assert isinstance(plain, _ExplicitBucketHistogramAggregation)
        assert tuple(plain._boundaries) == (1.0,)
        explicit = self._aggregation({"instruments": {"x": {"max_series": 3}}}, "x")
        assert isinstance(explicit, _ExplicitBucketHistogramAggregation)
        assert tuple(explicit._boundaries)[:2] == (0.005, 0.01)  # seconds buckets
