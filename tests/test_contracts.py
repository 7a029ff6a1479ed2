"""
Contract tests: the OpenTelemetry SDK and exporter hooks ron-metrics relies on.

Each fails loudly if an upgrade changes a private hook's shape or behaviour, so a
new release cannot silently break the one-reader hub, the views, the bucket
choice or fork safety. (hypercorn's internals have their own contract test in
test_hardening.py.)
"""

from __future__ import annotations

import inspect

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from ron_metrics.testing import config_for_tests, runtime_for_tests


class TestOpenTelemetryHooks:
    def test_reader_receive_hook_keeps_its_shape(self) -> None:
        """The hub overrides PrometheusMetricReader._receive_metrics(data, timeout, **kw)."""
        params = list(
            inspect.signature(PrometheusMetricReader._receive_metrics).parameters
        )
        assert params[:3] == ["self", "metrics_data", "timeout_millis"]

    def test_capture_hands_over_one_collection(self) -> None:
        """A capture returns the collection the reader received (the hook fires)."""
        with runtime_for_tests(config_for_tests()) as runtime:
            runtime.get_meter("app").create_counter("jobs").add(2)
            data = runtime._hub.capture()
            assert data is not None
            names = {
                metric.name
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
            }
            assert "jobs" in names

    def test_view_match_hook_keeps_its_shape(self) -> None:
        """Our views override View._match(instrument) -> bool."""
        assert list(inspect.signature(View._match).parameters) == ["self", "instrument"]

    def test_aggregation_factory_keeps_its_shape(self) -> None:
        """Bucket choice delegates to Aggregation._create_aggregation with 4 arguments."""
        params = list(
            inspect.signature(
                ExplicitBucketHistogramAggregation._create_aggregation
            ).parameters
        )
        assert params == [
            "self",
            "instrument",
            "attributes",
            "reservoir_factory",
            "start_time_unix_nano",
        ]

    def test_provider_fork_hook_exists(self) -> None:
        """Fork safety overrides MeterProvider._handle_fork and _update_resource."""
        assert callable(MeterProvider._handle_fork)
        assert list(inspect.signature(MeterProvider._update_resource).parameters) == [
            "self",
            "resource",
        ]
        assert hasattr(MeterProvider, "_all_metric_readers_lock")


class TestPrometheusExporterNaming:
    """
    The direct encoder names metrics with opentelemetry-exporter-prometheus's own
    private helpers, so both paths agree by construction. These pin the helpers'
    signatures and behaviour: a release that changes them fails here, by name,
    before any byte-identity test has to explain why.
    """

    def test_helpers_keep_their_shape(self) -> None:
        """map_unit(unit), sanitize_attribute(key), sanitize_full_name(name) exist."""
        from opentelemetry.exporter.prometheus import _mapping

        for helper, argument in [
            ("map_unit", "unit"),
            ("sanitize_attribute", "key"),
            ("sanitize_full_name", "name"),
        ]:
            params = list(inspect.signature(getattr(_mapping, helper)).parameters)
            assert params == [argument], helper

    @pytest.mark.parametrize(
        ("unit", "mapped"),
        [
            ("s", "seconds"),
            ("ms", "milliseconds"),
            ("By", "bytes"),
            ("1", ""),
            ("{request}", ""),
            ("m/s", "meters_per_second"),
            ("%", "percent"),
        ],
    )
    def test_units_map_as_before(self, unit: str, mapped: str) -> None:
        """UCUM units become the Prometheus unit suffixes we document."""
        from opentelemetry.exporter.prometheus._mapping import map_unit

        assert map_unit(unit) == mapped

    @pytest.mark.parametrize(
        ("raw", "attribute", "full_name"),
        [
            ("http.route", "http_route", "http_route"),
            ("1abc", "_abc", "_abc"),
            ("a-b", "a_b", "a_b"),
            ("a__b", "a_b", "a_b"),
            ("ok_1", "ok_1", "ok_1"),
        ],
    )
    def test_names_sanitise_as_before(
        self, raw: str, attribute: str, full_name: str
    ) -> None:
        """Label and metric names are sanitised the way our docs and dashboards assume."""
        from opentelemetry.exporter.prometheus._mapping import (
            sanitize_attribute,
            sanitize_full_name,
        )

        assert sanitize_attribute(raw) == attribute
        assert sanitize_full_name(raw) == full_name


class TestMultiprocessHooks:
    """
    A group member writes through from subclasses of the SDK's aggregations, and a
    forked child forgets the parent's series by clearing the SDK's per-view maps.
    """

    def test_aggregation_classes_keep_their_shape(self) -> None:
        """aggregate(measurement, should_sample_exemplar) and the fields we read."""
        from opentelemetry.sdk.metrics._internal import aggregation

        for name in (
            "_SumAggregation",
            "_LastValueAggregation",
            "_ExplicitBucketHistogramAggregation",
        ):
            cls = getattr(aggregation, name)
            params = list(inspect.signature(cls.aggregate).parameters)
            assert params == ["self", "measurement", "should_sample_exemplar"], name
            assert "__slots__" not in vars(cls), name  # our subclass swaps __class__

    def test_view_match_maps_are_where_we_clear_them(self) -> None:
        """MeterProvider → consumer → reader storages → view matches → aggregations."""
        from ron_metrics._fork import ForkSafeMeterProvider

        config = config_for_tests(sdk={"fast_path": False})
        with runtime_for_tests(config) as runtime:
            runtime.get_meter("app").create_counter("jobs").add(2, {"k": "v"})
            provider = runtime.meter_provider
            assert isinstance(provider, ForkSafeMeterProvider)
            storages = provider._measurement_consumer._reader_storages.values()
            matches = [
                match
                for storage in storages
                for found in storage._instrument_view_instrument_matches.values()
                for match in found
            ]
            assert any(match._attributes_aggregation for match in matches)
            provider._forget_measurements()
            assert not any(match._attributes_aggregation for match in matches)
