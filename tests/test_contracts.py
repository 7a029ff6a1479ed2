"""
Contract tests: the OpenTelemetry SDK and exporter hooks ron-metrics relies on.

Each fails loudly if an upgrade changes a private hook's shape or behaviour, so a
new release cannot silently break the one-reader hub, the views, the bucket
choice or fork safety. (hypercorn's internals have their own contract test in
test_hardening.py.)
"""

from __future__ import annotations

import inspect

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
