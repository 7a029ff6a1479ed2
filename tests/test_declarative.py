"""
OTEL_CONFIG_FILE: the OpenTelemetry declarative configuration file as a source.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import clean_env
from ron_metrics import ConfigError, load_config

DECLARATIVE = """
file_format: "1.0"
resource:
  attributes:
    - name: service.name
      value: checkout
    - name: service.version
      value: 1.4.2
    - name: region
      value: eu-west-1
meter_provider:
  exemplar_filter: always_off
  readers:
    - periodic:
        interval: 2000
        timeout: 1000
        exporter:
          otlp_http:
            endpoint: http://collector:4318/v1/metrics
            compression: gzip
            temporality_preference: delta
    - pull:
        exporter:
          prometheus/development:
            host: 127.0.0.1
            port: 9464
  views:
    - selector:
        instrument_name: http.server.request.duration
      stream:
        aggregation:
          explicit_bucket_histogram:
            boundaries: [0.1, 0.5, 1]
        attribute_keys:
          included: [http.route]
        aggregation_cardinality_limit: 500
    - selector:
        instrument_name: debug.*
      stream:
        aggregation:
          drop: {}
propagator:
  composite_list: tracecontext
"""

EQUIVALENT_TOML = """
[service]
name = "checkout"
build_version = "1.4.2"

[labels]
extra = { region = "eu-west-1" }

[cardinality.instruments."http.server.request.duration"]
attributes = ["http.route"]
aggregation = "explicit"
buckets = [0.1, 0.5, 1]
max_series = 500

[cardinality.instruments."debug.*"]
drop = true

[exporter]
kind = "both"

[exporter.prometheus]
bind = "127.0.0.1:9464"

[exporter.otlp]
endpoint = "http://collector:4318/v1/metrics"
protocol = "http/protobuf"
interval = "2000ms"
timeout = "1000ms"
compression = "gzip"
temporality = "delta"

[sdk]
exemplar_filter = "always_off"
"""


def write(tmp_path: Path, text: str, name: str = "otel.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class TestDeclarativeFile:
    def test_maps_to_the_equivalent_config(self, tmp_path: Path) -> None:
        """Resource, readers, views and the exemplar filter map to our keys."""
        declarative = load_config(
            env={"OTEL_CONFIG_FILE": write(tmp_path, DECLARATIVE)}
        )
        toml = load_config(write(tmp_path, EQUIVALENT_TOML, "ron.toml"), env={})
        assert declarative.to_dict() == toml.to_dict()
        assert declarative.digest == toml.digest

    def test_other_otel_variables_are_replaced_by_the_file(
        self, tmp_path: Path
    ) -> None:
        """With OTEL_CONFIG_FILE, the other OTEL_* variables are not read (the spec)."""
        config = load_config(
            env={
                "OTEL_CONFIG_FILE": write(tmp_path, DECLARATIVE),
                "OTEL_SERVICE_NAME": "ignored",
                "OTEL_METRICS_EXPORTER": "none",
                "RON_METRICS_SERVICE__BUILD_VERSION": "9.9.9",
            }
        )
        assert config.service.name == "checkout"
        assert config.exporter.kind == "both"
        assert config.service.build_version == "9.9.9"  # RON_METRICS_* still wins

    @pytest.mark.parametrize(
        ("fragment", "path"),
        [
            (
                "  readers:\n    - periodic:\n        exporter:\n          console: {}\n",
                "meter_provider.readers[0].periodic.exporter.console",
            ),
            (
                "  views:\n    - selector:\n        instrument_name: x\n"
                "        meter_name: lib\n      stream:\n        aggregation:\n"
                "          drop: {}\n",
                "meter_provider.views[0].selector.meter_name",
            ),
            (
                "  views:\n    - selector:\n        instrument_name: x\n      stream:\n"
                "        attribute_keys:\n          excluded: [user.id]\n",
                "meter_provider.views[0].stream.attribute_keys.excluded",
            ),
            (
                "  views:\n    - selector:\n        instrument_name: x\n      stream:\n"
                "        aggregation:\n"
                "          base2_exponential_bucket_histogram:\n"
                "            record_min_max: false\n",
                "meter_provider.views[0].stream.aggregation."
                "base2_exponential_bucket_histogram.record_min_max",
            ),
        ],
    )
    def test_what_we_cannot_honour_is_refused_by_path(
        self, tmp_path: Path, fragment: str, path: str
    ) -> None:
        """A metrics setting ron-metrics cannot honour is a ConfigError naming it."""
        pull = (
            "  readers:\n    - pull:\n        exporter:\n"
            "          prometheus/development: {}\n"
        )
        if "readers" not in fragment:
            fragment = pull + fragment
        text = (
            'file_format: "1.0"\nresource:\n  attributes:\n'
            "    - name: service.name\n      value: s\nmeter_provider:\n" + fragment
        )
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_CONFIG_FILE": write(tmp_path, text)})
        assert f"OTEL_CONFIG_FILE:{path}" in caught.value.keys

    def test_two_periodic_readers_are_refused(self, tmp_path: Path) -> None:
        """One collection feeds every exporter: two OTLP readers are refused."""
        reader = (
            "    - periodic:\n        exporter:\n          otlp_grpc:\n"
            "            endpoint: http://c:4317\n"
        )
        text = (
            'file_format: "1.0"\nresource:\n  attributes:\n'
            "    - name: service.name\n      value: s\nmeter_provider:\n  readers:\n"
            + reader
            * 2
        )
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_CONFIG_FILE": write(tmp_path, text)})
        assert "OTEL_CONFIG_FILE:meter_provider.readers" in caught.value.keys

    def test_a_broken_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A file that does not match the schema is a ConfigError, not a traceback."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={
                    "OTEL_CONFIG_FILE": write(
                        tmp_path, 'file_format: "1.0"\nbogus: [\n'
                    )
                }
            )
        assert caught.value.keys[0] == "OTEL_CONFIG_FILE"

    def test_check_config_shows_the_equivalent_effective_config(
        self, tmp_path: Path
    ) -> None:
        """ron-metrics check-config with OTEL_CONFIG_FILE prints the same digest as TOML."""
        # The fast path stated as the CLI's default is: the digests compare whatever
        # path the suite runs on.
        toml = load_config(
            write(tmp_path, EQUIVALENT_TOML, "ron.toml"),
            env={},
            sdk={"fast_path": True},
        )
        result = subprocess.run(
            [sys.executable, "-m", "ron_metrics", "check-config"],
            env=clean_env(OTEL_CONFIG_FILE=write(tmp_path, DECLARATIVE)),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"digest: blake3:{toml.digest}" in result.stdout
        assert (
            '"resolved_endpoint": "http://collector:4318/v1/metrics"' in result.stdout
        )
