from __future__ import annotations

import sys

import pytest

import ron_metrics
from conftest import run_python


class TestPublicApi:
    def test_all_is_sorted_and_complete(self) -> None:
        """__all__ is sorted and lists exactly the public names the package defines."""
        assert list(ron_metrics.__all__) == sorted(ron_metrics.__all__)
        public = {
            name
            for name in vars(ron_metrics)
            if not name.startswith("_")
            and not isinstance(getattr(ron_metrics, name), type(sys))
        }
        public.discard("annotations")
        assert public == set(ron_metrics.__all__)

    def test_version_is_exposed(self) -> None:
        """ron_metrics.__version__ comes from the installed metadata."""
        assert ron_metrics.__version__.count(".") >= 2

    def test_import_starts_nothing(self) -> None:
        """Importing the package starts no thread and installs no provider, even with a broken env."""
        code = (
            "import os, threading\n"
            "os.environ['RON_METRICS_CONFIG'] = '/nonexistent.toml'\n"
            "os.environ['OTEL_METRIC_EXPORT_INTERVAL'] = 'garbage'\n"
            "before = threading.active_count()\n"
            "import ron_metrics, ron_metrics.runtime, ron_metrics.cli\n"
            "from opentelemetry import metrics\n"
            "print(threading.active_count() - before)\n"
            "print(type(metrics.get_meter_provider()).__name__)\n"
        )
        out = run_python(code).split()
        assert out[0] == "0"
        assert out[1] == "_ProxyMeterProvider"


class TestRuntimeSurface:
    def test_properties_are_read_only(self) -> None:
        """Users read config, state, address, meter_provider and health; none is assignable."""
        from ron_metrics.testing import runtime_for_tests

        with runtime_for_tests() as runtime:
            for name in ("config", "state", "address", "meter_provider", "health"):
                getattr(runtime, name)
                with pytest.raises(AttributeError):
                    setattr(runtime, name, None)

    def test_subscribe_delivers_lifecycle_events(self) -> None:
        """subscribe() sees a reload's ConfigUpdated and ExporterSwitched, then Draining."""
        from ron_metrics.testing import config_for_tests

        runtime = ron_metrics.start(config_for_tests(), set_global=False)
        events = runtime.subscribe()
        runtime.reload(config_for_tests(exporter={"kind": "prometheus"}))
        runtime.shutdown()
        kinds = [type(event) for event in events.drain()]
        assert kinds == [
            ron_metrics.ConfigUpdated,
            ron_metrics.ExporterSwitched,
            ron_metrics.Draining,
        ]
