from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ron_metrics import ConfigError, load_config
from ron_metrics.config.values import BindAddress


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ron-metrics.toml"
    path.write_text(textwrap.dedent(text))
    return path


class TestPrecedence:
    @pytest.mark.parametrize(
        ("file_kind", "env_kind", "override_kind", "expected"),
        [
            (None, None, None, "prometheus"),
            ("none", None, None, "none"),
            ("none", "otlp", None, "otlp"),
            ("none", "otlp", "both", "both"),
            (None, None, "none", "none"),
            ("otlp", None, "prometheus", "prometheus"),
        ],
    )
    def test_overrides_beat_env_beat_file_beat_defaults(
        self,
        tmp_path: Path,
        file_kind: str | None,
        env_kind: str | None,
        override_kind: str | None,
        expected: str,
    ) -> None:
        """Overrides > environment > file > defaults, for the same key."""
        text = '[service]\nname = "file-svc"\n'
        if file_kind:
            text += f'[exporter]\nkind = "{file_kind}"\n'
        env = {"OTEL_METRICS_EXPORTER": env_kind} if env_kind else {}
        overrides: dict[str, Any] = (
            {"exporter": {"kind": override_kind}} if override_kind else {}
        )
        config = load_config(write(tmp_path, text), env=env, **overrides)
        assert config.exporter.kind == expected

    def test_ron_metrics_env_beats_otel_env(self) -> None:
        """RON_METRICS_* variables win over the OTEL_* ones for the same key."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "from-otel",
                "RON_METRICS_SERVICE__NAME": "from-ron",
            }
        )
        assert config.service.name == "from-ron"

    def test_config_file_from_env_variable(self, tmp_path: Path) -> None:
        """RON_METRICS_CONFIG names the file when no path is given."""
        path = write(tmp_path, '[service]\nname = "via-env"\n')
        assert (
            load_config(env={"RON_METRICS_CONFIG": str(path)}).service.name == "via-env"
        )

    def test_defaults_layer_is_lowest(self, tmp_path: Path) -> None:
        """The defaults tree sits below the file."""
        path = write(tmp_path, '[service]\nname = "file"\n')
        config = load_config(
            path, env={}, defaults={"service": {"name": "dflt", "build_version": "1.2"}}
        )
        assert (config.service.name, config.service.build_version) == ("file", "1.2")


class TestOtelEnvironment:
    def test_otel_variables_map_to_keys(self) -> None:
        """The OTel SDK variables set the matching keys, units converted from ms."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "svc",
                "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.4.2,region=eu-west-1,service.instance.id=i-1",
                "OTEL_METRICS_EXPORTER": "prometheus,otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics-collector:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "1500",
                "OTEL_METRIC_EXPORT_INTERVAL": "3000",
                "OTEL_EXPORTER_PROMETHEUS_HOST": "::1",
                "OTEL_EXPORTER_PROMETHEUS_PORT": "9999",
            }
        )
        assert config.service.build_version == "1.4.2"
        assert config.service.instance == "i-1"
        assert dict(config.labels.extra) == {"region": "eu-west-1"}
        assert config.exporter.kind == "both"
        otlp = config.exporter.otlp
        assert otlp.endpoint == "http://metrics-collector:4317"
        assert otlp.protocol == "http/protobuf"
        assert dict(otlp.headers) == {"authorization": "Bearer abc"}
        assert (otlp.timeout, otlp.interval) == (1.5, 3.0)
        assert config.exporter.prometheus.bind == BindAddress(host="::1", port=9999)

    def test_unlisted_resource_attribute_is_ignored_with_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Resource attributes outside the allowlist are dropped, and the key is logged."""
        with caplog.at_level(logging.WARNING, logger="ron_metrics.config"):
            config = load_config(
                env={
                    "OTEL_SERVICE_NAME": "s",
                    "OTEL_RESOURCE_ATTRIBUTES": "user.email=a@b.co",
                }
            )
        assert dict(config.labels.extra) == {}
        assert "user.email" in caplog.text
        assert "a@b.co" not in caplog.text

    def test_ron_metrics_env_values_are_typed(self) -> None:
        """RON_METRICS_* values read as TOML scalars: booleans, numbers, lists."""
        config = load_config(
            env={
                "RON_METRICS_SERVICE__NAME": "svc",
                "RON_METRICS_SERVICE__AMNESIA": "true",
                "RON_METRICS_CARDINALITY__MAX_SERIES": "17",
                "RON_METRICS_CARDINALITY__DEFAULT_ATTRIBUTES": '["route", "method"]',
            }
        )
        assert config.service.amnesia is True
        assert config.cardinality.max_series == 17
        assert config.cardinality.default_attributes == ("route", "method")


class TestResourceAllowlist:
    @pytest.mark.parametrize(
        "source",
        [
            {"env": {"RON_METRICS_LABELS__ALLOWED_EXTRA": '["k8s.pod.name"]'}},
            {"overrides": {"labels": {"allowed_extra": ["k8s.pod.name"]}}},
            {"defaults": {"labels": {"allowed_extra": ["k8s.pod.name"]}}},
        ],
        ids=["ron-env", "overrides", "defaults"],
    )
    def test_allowlist_from_any_source_admits_resource_keys(
        self, source: dict[str, dict[str, object]]
    ) -> None:
        """The allowlist OTEL_RESOURCE_ATTRIBUTES is judged against may come from anywhere."""
        env = {
            "OTEL_SERVICE_NAME": "s",
            "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=api-7",
            **source.get("env", {}),
        }
        config = load_config(
            env=env,  # type: ignore[arg-type]  # the table's env values are strings
            defaults=source.get("defaults"),
            **source.get("overrides", {}),  # type: ignore[arg-type]  # sections as plain dicts
        )
        assert dict(config.labels.extra) == {"k8s.pod.name": "api-7"}

    def test_ignored_keys_are_json_warnings_without_secrets(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An ignored resource key is a JSON warning; a secret-shaped key is not shown."""
        with caplog.at_level(logging.WARNING, logger="ron_metrics.config"):
            load_config(
                env={
                    "OTEL_SERVICE_NAME": "s",
                    "OTEL_RESOURCE_ATTRIBUTES": "zone=a,api_token=hunter2",
                }
            )
        lines = [json.loads(r.getMessage()) for r in caplog.records]
        assert [line["key"] for line in lines] == ["zone", "(key not shown)"]
        assert "api_token" not in caplog.text
        assert "hunter2" not in caplog.text


class TestSdkSection:
    @pytest.mark.parametrize(
        ("env", "disabled", "exemplars"),
        [
            ({}, False, "trace_based"),
            ({"OTEL_SDK_DISABLED": "TRUE"}, True, "trace_based"),
            ({"OTEL_SDK_DISABLED": "false"}, False, "trace_based"),
            ({"OTEL_METRICS_EXEMPLAR_FILTER": "always_off"}, False, "always_off"),
            ({"OTEL_METRICS_EXEMPLAR_FILTER": "ALWAYS_ON"}, False, "always_on"),
        ],
    )
    def test_sdk_variables(
        self, env: dict[str, str], disabled: bool, exemplars: str
    ) -> None:
        """OTEL_SDK_DISABLED and OTEL_METRICS_EXEMPLAR_FILTER set the [sdk] keys."""
        config = load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert (config.sdk.disabled, config.sdk.exemplar_filter) == (
            disabled,
            exemplars,
        )

    @pytest.mark.parametrize(
        ("env", "key"),
        [
            ({"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"}, "sdk.exemplar_filter"),
        ],
    )
    def test_bad_sdk_variables_are_named(self, env: dict[str, str], key: str) -> None:
        """Unknown spellings are refused, naming the variable or key."""
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert caught.value.keys == (key,)


class TestBooleanVariables:
    """
    Every boolean OTEL_* variable follows the specification: only a
    case-insensitive 'true' is true; any other value is false, with a warning
    unless it is 'false' or empty.
    """

    @pytest.mark.parametrize(
        ("raw", "expected", "warned"),
        [
            ("true", True, False),
            ("TRUE", True, False),
            (" True ", True, False),
            ("false", False, False),
            ("FALSE", False, False),
            ("", False, False),
            ("1", False, True),
            ("yes", False, True),
            ("on", False, True),
        ],
    )
    @pytest.mark.parametrize(
        "variable",
        [
            "OTEL_SDK_DISABLED",
            "OTEL_EXPORTER_OTLP_INSECURE",
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
        ],
    )
    def test_each_boolean_variable(
        self,
        variable: str,
        raw: str,
        expected: bool,
        warned: bool,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The value read, and the warning, per variable and spelling."""
        from ron_metrics.config.environment import otel_boolean

        env = {"OTEL_SERVICE_NAME": "s", variable: raw}
        caplog.set_level(logging.WARNING, logger="ron_metrics.config")
        assert otel_boolean(env, variable) is expected
        config = load_config(env=env)  # never refused for a boolean's spelling
        if variable == "OTEL_SDK_DISABLED":
            assert config.sdk.disabled is expected
        warnings = [
            json.loads(r.getMessage())
            for r in caplog.records
            if "otel_boolean_read_as_false" in r.getMessage()
        ]
        assert bool(warnings) is warned
        assert all(w["variable"] == variable for w in warnings)


class TestOtlpVariables:
    def test_tls_compression_and_temporality_variables(self) -> None:
        """Certificate, client key/cert, compression and temporality map to their keys."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": "/generic-ca.pem",
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": "/ca.pem",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/client.pem",
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY": "/client.key",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta",
                "OTEL_METRIC_EXPORT_TIMEOUT": "700",
            }
        )
        otlp = config.exporter.otlp
        assert (otlp.ca_file, otlp.client_cert, otlp.client_key) == (
            "/ca.pem",
            "/client.pem",
            "/client.key",
        )
        assert (otlp.compression, otlp.temporality) == ("gzip", "delta")
        assert otlp.timeout == pytest.approx(0.7)

    def test_exporter_timeout_wins_over_reader_timeout(self) -> None:
        """OTEL_EXPORTER_OTLP_TIMEOUT wins over OTEL_METRIC_EXPORT_TIMEOUT."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_METRIC_EXPORT_TIMEOUT": "700",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "900",
            }
        )
        assert config.exporter.otlp.timeout == pytest.approx(0.9)

    @pytest.mark.parametrize(
        ("env", "key"),
        [
            (
                {
                    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": (
                        "summary"
                    )
                },
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
            ),
            ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "exporter.otlp.protocol"),
            (
                {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"},
                "exporter.otlp.temporality",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317",
                    "OTEL_EXPORTER_OTLP_INSECURE": "true",
                },
                "OTEL_EXPORTER_OTLP_INSECURE",
            ),
        ],
    )
    def test_unsupported_values_are_refused(
        self, env: dict[str, str], key: str
    ) -> None:
        """What we cannot honour is refused with its name, never silently ignored."""
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert caught.value.keys == (key,)


class TestOtlpEndpointAndTiming:
    def test_headers_keep_every_equals_sign_after_the_first(self) -> None:
        """A header value holding '=' (Basic auth, base64 padding) stays whole."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Basic dXNlcjpwYXNz==,x-a=b=c",
            }
        )
        assert config.exporter.otlp.headers == {
            "authorization": "Basic dXNlcjpwYXNz==",
            "x-a": "b=c",
        }

    @pytest.mark.parametrize(
        ("env", "resolved"),
        [
            (
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                },
                "http://collector:4318/v1/metrics",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw:443/otlp/",
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
                },
                "https://gw:443/otlp/v1/metrics",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw:443/tenant-a",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                },
                "https://gw:443/tenant-a/v1/metrics",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/custom",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                },
                "http://m:4318/custom",
            ),
            (
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"},
                "https://collector:4317",
            ),
            (
                {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
                "http://localhost:4318/v1/metrics",
            ),
            ({}, "http://localhost:4317"),
        ],
    )
    def test_endpoint_follows_the_spec(
        self, env: dict[str, str], resolved: str
    ) -> None:
        """The generic variable is a base URL over HTTP; the metrics one is used as is."""
        config = load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert config.exporter.otlp.resolved_endpoint == resolved

    def test_http_endpoint_with_empty_path_gets_the_metrics_path(self) -> None:
        """In the file, an http/protobuf endpoint without a path gets /v1/metrics."""
        config = load_config(
            env={},
            service={"name": "s"},
            exporter={
                "otlp": {"endpoint": "http://c:4318", "protocol": "http/protobuf"}
            },
        )
        assert config.exporter.otlp.resolved_endpoint == "http://c:4318/v1/metrics"

    @pytest.mark.parametrize(
        ("interval", "timeout"), [("2000", 2.0), ("500", 0.5), ("60000", 5.0)]
    )
    def test_timeout_defaults_to_min_of_5s_and_interval(
        self, interval: str, timeout: float
    ) -> None:
        """OTEL_METRIC_EXPORT_INTERVAL alone is valid: the timeout follows it down."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_METRIC_EXPORT_INTERVAL": interval,
            }
        )
        assert config.exporter.otlp.timeout == timeout

    def test_otlp_cross_checks_skip_without_an_otlp_sink(self) -> None:
        """With kind = prometheus, OTLP keys are type-checked but not judged together."""
        config = load_config(
            env={},
            service={"name": "s"},
            exporter={"otlp": {"interval": "1s", "timeout": "2s"}},
        )
        assert config.exporter.kind == "prometheus"
        with pytest.raises(ConfigError, match=r"exporter\.otlp\.timeout"):
            load_config(
                env={}, service={"name": "s"}, exporter={"otlp": {"timeout": "soon"}}
            )

    def test_every_problem_in_one_pass(self) -> None:
        """Type errors in one section and cross-field errors in another come together."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={},
                service={"name": "svc", "amnesia": "yes"},
                exporter={
                    "kind": "otlp",
                    "otlp": {"interval": "1s", "timeout": "2s", "endpoint": "ftp://x"},
                },
            )
        assert set(caught.value.keys) == {
            "service.amnesia",
            "exporter.otlp.timeout",
            "exporter.otlp.endpoint",
        }

    @pytest.mark.parametrize(
        ("section", "key"),
        [
            ({"service": {"name": "s", "amnesia": "yes"}}, "service.amnesia"),
            (
                {
                    "service": {"name": "s"},
                    "exporter": {"prometheus": {"gzip": "false"}},
                },
                "exporter.prometheus.gzip",
            ),
            (
                {
                    "service": {"name": "s"},
                    "cardinality": {"default_attributes": "http.route"},
                },
                "cardinality.default_attributes",
            ),
            (
                {"service": {"name": "s"}, "cardinality": {"max_series": "2000"}},
                "cardinality.max_series",
            ),
        ],
    )
    def test_strings_are_never_coerced(self, section: dict[str, Any], key: str) -> None:
        """A string is not a boolean, a number or a list: the key is named."""
        with pytest.raises(ConfigError) as caught:
            load_config(env={}, **section)
        assert caught.value.keys == (key,)


class TestValidation:
    @pytest.mark.parametrize(
        ("sections", "key", "fragment"),
        [
            ({"service": {}}, "service.name", "required"),
            ({"service": {"name": ""}}, "service.name", "empty"),
            (
                {"service": {"name": "s", "amnesia": "maybe"}},
                "service.amnesia",
                "true or false",
            ),
            ({"cardinality": {"max_series": 0}}, "cardinality.max_series", ">= 1"),
            (
                {"cardinality": {"default_attributes": ["ok", "bad name"]}},
                "cardinality.default_attributes",
                "not a valid name",
            ),
            ({"exporter": {"kind": "statsd"}}, "exporter.kind", "must be one of"),
            (
                {"exporter": {"prometheus": {"bind": "nowhere"}}},
                "exporter.prometheus.bind",
                "HOST:PORT",
            ),
            (
                {"exporter": {"prometheus": {"bind": "127.0.0.1:70000"}}},
                "exporter.prometheus.bind",
                "out of range",
            ),
            (
                {"exporter": {"prometheus": {"bind": "unix:relative.sock"}}},
                "exporter.prometheus.bind",
                "absolute",
            ),
            (
                {"exporter": {"prometheus": {"bind": "0.0.0.0:9464"}}},
                "exporter.prometheus.bind",
                "allow_public_bind",
            ),
            (
                {"exporter": {"prometheus": {"read_timeout": "soon"}}},
                "exporter.prometheus.read_timeout",
                "duration",
            ),
            (
                {"exporter": {"prometheus": {"read_timeout": "0s"}}},
                "exporter.prometheus.read_timeout",
                "positive",
            ),
            (
                {"exporter": {"prometheus": {"tls": {"cert": "/c.pem"}}}},
                "exporter.prometheus.tls",
                "together",
            ),
            (
                {"exporter": {"otlp": {"protocol": "thrift"}}},
                "exporter.otlp.protocol",
                "must be one of",
            ),
            (
                {"exporter": {"kind": "otlp", "otlp": {"timeout": "20s"}}},
                "exporter.otlp.timeout",
                "must not exceed",
            ),
            (
                {"exporter": {"kind": "both", "otlp": {"endpoint": "collector:4317"}}},
                "exporter.otlp.endpoint",
                "http://",
            ),
            (
                {"labels": {"extra": {"team": "core"}}},
                "labels.extra.team",
                "allowed_extra",
            ),
            (
                {"labels": {"extra": {"region": "x" * 200}}},
                "labels.extra.region",
                "at most",
            ),
            (
                {
                    "cardinality": {
                        "instruments": {"a.*": {"drop": True, "attributes": ["x"]}}
                    }
                },
                'cardinality.instruments."a.*"',
                "cannot be combined",
            ),
            (
                {"cardinality": {"instruments": {"a.*": {}}}},
                'cardinality.instruments."a.*"',
                "needs",
            ),
        ],
    )
    def test_every_error_names_its_key(
        self, sections: dict[str, Any], key: str, fragment: str
    ) -> None:
        """Each invalid value is reported under its own dotted key, with the reason."""
        sections.setdefault("service", {"name": "svc"})
        with pytest.raises(ConfigError) as caught:
            load_config(env={}, **sections)
        problems = {problem.key: problem.message for problem in caught.value.problems}
        assert key in problems, problems
        assert fragment in problems[key]

    def test_typo_gets_a_suggestion(self, tmp_path: Path) -> None:
        """An unknown key is rejected and its closest valid key suggested."""
        path = write(
            tmp_path,
            '[service]\nname = "s"\n[exporter.prometheus]\nbnid = "127.0.0.1:1"\n',
        )
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={})
        (problem,) = caught.value.problems
        assert problem.key == "exporter.prometheus.bnid"
        assert "did you mean 'bind'" in problem.message

    def test_all_problems_reported_at_once(self) -> None:
        """Problems in different sections and sources come back together."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={
                    "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
                    "RON_METRICS_EXPORTER__KNID": "x",
                },
                service={"nam": "x"},
                labels={"extra": {"zone": "a"}},
            )
        assert set(caught.value.keys) == {
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "exporter.knid",
            "service.nam",
            "service.name",
            "labels.extra.zone",
        }

    def test_invalid_toml_is_reported(self, tmp_path: Path) -> None:
        """A file that is not TOML is that one problem (not also a missing name)."""
        path = write(tmp_path, "[service\nname=")
        with pytest.raises(ConfigError, match="not valid TOML") as caught:
            load_config(path, env={})
        assert len(caught.value.problems) == 1

    def test_missing_file_is_reported(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError, not an OSError, and the only problem."""
        with pytest.raises(ConfigError, match="does not exist") as caught:
            load_config(tmp_path / "nope.toml", env={})
        assert len(caught.value.problems) == 1

    def test_unreadable_declarative_file_is_the_one_problem(
        self, tmp_path: Path
    ) -> None:
        """A declarative file that does not parse: only that is reported."""
        bad = tmp_path / "otel.yaml"
        bad.write_text("file_format: [1\n")
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_CONFIG_FILE": str(bad)})
        assert len(caught.value.problems) == 1
        assert "service.name" not in str(caught.value)

    def test_independent_problems_are_all_reported(self, tmp_path: Path) -> None:
        """A readable file's problems and the environment's come together."""
        path = write(tmp_path, '[exporter]\nkind = "pigeon"\n')
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={"RON_METRICS_EXPORTER__PROMETHEUS__GZIP": "perhaps"})
        assert {"exporter.kind", "service.name"} <= set(caught.value.keys)

    def test_config_error_is_a_value_error(self) -> None:
        """ConfigError can be caught as ValueError."""
        with pytest.raises(ValueError, match=r"service\.name"):
            load_config(env={})

    @pytest.mark.parametrize(
        ("raw", "seconds"),
        [
            ("2s", 2.0),
            ("150ms", 0.15),
            ("1m", 60.0),
            ("500us", 0.0005),
            (3, 3.0),
            ("1.5s", 1.5),
        ],
    )
    def test_durations(self, raw: object, seconds: float) -> None:
        """Durations accept units and bare numbers of seconds."""
        config = load_config(
            env={},
            service={"name": "s"},
            exporter={"otlp": {"interval": raw, "timeout": "100us"}},
        )
        assert config.exporter.otlp.interval == pytest.approx(seconds)


class TestSecrets:
    def test_headers_masked_in_repr_and_dict(self) -> None:
        """OTLP header values never appear in repr() or to_dict()."""
        config = load_config(
            env={},
            service={"name": "s"},
            exporter={"otlp": {"headers": {"api-key": "s3cr3t-value"}}},
        )
        assert "s3cr3t-value" not in repr(config)
        assert "s3cr3t-value" not in str(config.to_dict())
        assert config.to_dict()["exporter"]["otlp"]["headers"] == {"api-key": "***"}
        assert config.to_dict(reveal_secrets=True)["exporter"]["otlp"]["headers"] == {
            "api-key": "s3cr3t-value"
        }

    def test_bad_headers_env_does_not_echo_value(self) -> None:
        """An unparsable header variable is reported without its value."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={
                    "OTEL_SERVICE_NAME": "s",
                    "OTEL_EXPORTER_OTLP_HEADERS": "tokenXYZsecret",
                }
            )
        assert "tokenXYZsecret" not in str(caught.value)
        assert "OTEL_EXPORTER_OTLP_HEADERS" in caught.value.keys

    def test_secret_label_value_not_echoed(self) -> None:
        """A label refused as secret-like is not echoed in the error."""
        token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={}, service={"name": "s"}, labels={"extra": {"tier": token}}
            )
        assert token not in str(caught.value)
        assert caught.value.keys == ("labels.extra.tier",)


class TestDigestAndAliases:
    def test_digest_is_stable_and_tracks_changes(self) -> None:
        """The BLAKE3 digest is the same for equal configs and differs otherwise."""
        a = load_config(env={}, service={"name": "s"})
        b = load_config(env={}, service={"name": "s"})
        c = load_config(env={}, service={"name": "t"})
        assert a.digest == b.digest
        assert a.digest != c.digest
        assert len(a.digest) == 64

    def test_digest_tracks_secret_changes(self) -> None:
        """Changing only a header value changes the digest (so a reload sees it)."""
        a = load_config(
            env={}, service={"name": "s"}, exporter={"otlp": {"headers": {"k": "1"}}}
        )
        b = load_config(
            env={}, service={"name": "s"}, exporter={"otlp": {"headers": {"k": "2"}}}
        )
        assert a.digest != b.digest

    def test_deprecated_alias_warns_and_applies(self, tmp_path: Path) -> None:
        """exporter.prometheus.listen_addr still works, with a DeprecationWarning."""
        path = write(
            tmp_path,
            '[service]\nname="s"\n[exporter.prometheus]\nlisten_addr = "127.0.0.1:9100"\n',
        )
        with pytest.warns(DeprecationWarning, match="exporter.prometheus.bind"):
            config = load_config(path, env={})
        assert config.exporter.prometheus.bind.port == 9100

    def test_alias_and_new_key_together_is_an_error(self, tmp_path: Path) -> None:
        """Setting both the deprecated and the new key in one source is refused."""
        path = write(
            tmp_path,
            '[service]\nname="s"\n[exporter.prometheus]\nlisten_addr = "127.0.0.1:1"\nbind = "127.0.0.1:2"\n',
        )
        with pytest.raises(ConfigError, match="both are set"):
            load_config(path, env={})


class TestEnvironmentProblems:
    """Each bad environment value is one problem naming its variable and saying why."""

    @pytest.mark.parametrize(
        ("env", "key", "why"),
        [
            (
                {"OTEL_METRICS_EXPORTER": "bogus"},
                "OTEL_METRICS_EXPORTER",
                "unsupported value 'bogus'",
            ),
            (
                {"OTEL_RESOURCE_ATTRIBUTES": "novalue"},
                "OTEL_RESOURCE_ATTRIBUTES",
                "must be a list of key=value pairs",
            ),
            (
                {"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"},
                "OTEL_EXPORTER_OTLP_HEADERS",
                "must be a list of key=value pairs",
            ),
            (
                {"OTEL_METRIC_EXPORT_INTERVAL": "0"},
                "OTEL_METRIC_EXPORT_INTERVAL",
                "must be a positive integer of milliseconds",
            ),
            (
                {"OTEL_METRIC_EXPORT_TIMEOUT": "ten"},
                "OTEL_METRIC_EXPORT_TIMEOUT",
                "must be a positive integer of milliseconds",
            ),
            (
                {"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"},
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "must be a positive integer of milliseconds",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "nope",
                },
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "must be one of 'explicit_bucket_histogram',"
                " 'base2_exponential_bucket_histogram'",
            ),
            (
                {
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://c:4318/v1/metrics",
                    "OTEL_EXPORTER_OTLP_INSECURE": "true",
                },
                "OTEL_EXPORTER_OTLP_INSECURE",
                "'true' contradicts an https:// endpoint",
            ),
            (
                {"RON_METRICS_SERVICE__NAME": "[" * 40 + "]" * 40},
                "RON_METRICS_SERVICE__NAME",
                "the value",
            ),
        ],
    )
    def test_the_problem_names_the_variable(
        self, env: dict[str, str], key: str, why: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert caught.value.keys == (key,)
        assert why in str(caught.value)

    @pytest.mark.parametrize(
        ("value", "kind"),
        [
            ("prometheus, otlp", "both"),
            ("OTLP", "otlp"),
            ("none", "none"),
        ],
    )
    def test_exporter_lists_in_any_order_and_case(self, value: str, kind: str) -> None:
        config = load_config(
            env={"OTEL_SERVICE_NAME": "s", "OTEL_METRICS_EXPORTER": value}
        )
        assert config.exporter.kind == kind

    def test_the_smallest_positive_interval_is_accepted(self) -> None:
        config = load_config(
            env={"OTEL_SERVICE_NAME": "s", "OTEL_METRIC_EXPORT_INTERVAL": "1"}
        )
        assert config.exporter.otlp.interval == 0.001

    def test_the_default_histogram_aggregation_may_be_spelled_in_capitals(self) -> None:
        env = {
            "OTEL_SERVICE_NAME": "s",
            "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": (
                " Explicit_Bucket_Histogram "
            ),
        }
        assert load_config(env=env).service.name == "s"

    def test_empty_items_in_a_list_are_skipped(self) -> None:
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_EXPORTER_OTLP_HEADERS": "a=1, ,,b=2",
            }
        )
        assert config.exporter.otlp.headers == {"a": "1", "b": "2"}

    def test_an_undecodable_environment_value_is_a_clear_problem(self) -> None:
        """os.environ holds undecodable bytes as surrogates: refused by name, unshown."""
        with pytest.raises(ConfigError) as caught:
            load_config(
                env={
                    "OTEL_SERVICE_NAME": "s",
                    "RON_METRICS_SERVICE__BUILD_VERSION": "v1secret\udcff",
                }
            )
        assert "RON_METRICS_SERVICE__BUILD_VERSION" in caught.value.keys
        assert "is not UTF-8" in str(caught.value)
        assert "secret" not in str(caught.value)

    @pytest.mark.parametrize(
        ("env", "bind"),
        [
            ({"OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.2"}, "127.0.0.2:9464"),
            ({"OTEL_EXPORTER_PROMETHEUS_PORT": "9999"}, "127.0.0.1:9999"),
            ({"OTEL_EXPORTER_PROMETHEUS_HOST": "::1"}, "[::1]:9464"),
            (
                {
                    "OTEL_EXPORTER_PROMETHEUS_HOST": "[::1]",
                    "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
                },
                "[::1]:0",
            ),
        ],
    )
    def test_prometheus_host_and_port(self, env: dict[str, str], bind: str) -> None:
        config = load_config(env={"OTEL_SERVICE_NAME": "s", **env})
        assert str(config.exporter.prometheus.bind) == bind

    def test_a_base_url_keeps_its_path_characters(self) -> None:
        """Only trailing slashes are trimmed before /v1/metrics is appended."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://gw:4318/regionX/",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            }
        )
        assert (
            config.exporter.otlp.resolved_endpoint
            == "http://gw:4318/regionX/v1/metrics"
        )

    def test_the_metrics_endpoint_decides_whether_insecure_contradicts(self) -> None:
        """The signal-specific endpoint is the one judged against INSECURE."""
        config = load_config(
            env={
                "OTEL_SERVICE_NAME": "s",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://base:4317",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://plain:4318/v1/metrics",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            }
        )
        assert str(config.exporter.otlp.endpoint).startswith("http://plain")

    def test_an_ignored_resource_attribute_is_logged_by_name(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING):
            load_config(
                env={"OTEL_SERVICE_NAME": "s", "OTEL_RESOURCE_ATTRIBUTES": "team=a"}
            )
        lines = [json.loads(r.getMessage()) for r in caplog.records]
        ignored = [
            line for line in lines if line.get("event") == "resource_attribute_ignored"
        ]
        assert len(ignored) == 1
        assert ignored[0]["source"] == "OTEL_RESOURCE_ATTRIBUTES"
        assert ignored[0]["why"] == "not in labels.allowed_extra"

    def test_otel_variables_are_not_read_beside_a_declarative_file(self) -> None:
        from ron_metrics.config.environment import env_layer

        tree, problems = env_layer(
            {"OTEL_METRICS_EXPORTER": "bogus", "RON_METRICS_SERVICE__NAME": "x"},
            allowed_extra=(),
            otel=False,
        )
        assert problems == []
        assert tree == {"service": {"name": "x"}}


class TestParsingShapes:
    """Tables where tables belong, instrument rules whole, every problem named."""

    def _problems(self, **overrides: Any) -> dict[str, str]:
        overrides.setdefault("service", {"name": "s"})
        with pytest.raises(ConfigError) as caught:
            load_config(env={}, **overrides)
        return {p.key: p.message for p in caught.value.problems}

    def test_a_section_that_is_not_a_table(self) -> None:
        assert self._problems(labels=5) == {"labels": "expected a table, got int"}
        assert self._problems(cardinality={"instruments": "x"}) == {
            "cardinality.instruments": "expected a table of instrument rules"
        }

    def test_the_top_level_that_is_not_a_table(self) -> None:
        from ron_metrics.config.parsing import parse_config

        with pytest.raises(ConfigError) as caught:
            parse_config([1, 2])  # type: ignore[arg-type]  # the point of the test
        assert [(p.key, p.message) for p in caught.value.problems] == [
            ("(top level)", "expected a table, got list")
        ]

    def test_the_rule_pattern_is_not_a_key(self) -> None:
        problems = self._problems(
            cardinality={"instruments": {"x": {"pattern": "y", "max_series": 2}}}
        )
        assert list(problems) == ['cardinality.instruments."x".pattern']
        assert problems['cardinality.instruments."x".pattern'].startswith("unknown key")

    @pytest.mark.parametrize(
        "other", [{"attributes": ["a"]}, {"max_series": 3}, {"buckets": [1.0]}]
    )
    def test_drop_combined_with_anything_is_refused(
        self, other: dict[str, Any]
    ) -> None:
        problems = self._problems(
            cardinality={"instruments": {"x": {"drop": True, **other}}}
        )
        assert problems == {
            'cardinality.instruments."x"': "'drop = true' cannot be combined with other keys"
        }

    def test_every_bad_rule_is_reported_in_one_go(self) -> None:
        problems = self._problems(
            cardinality={
                "instruments": {"a": 5, "b": {}, "c": {"drop": True, "max_series": 1}}
            }
        )
        assert problems == {
            'cardinality.instruments."a"': "expected a table, got int",
            'cardinality.instruments."b"': (
                "needs 'attributes', 'max_series', 'buckets', 'aggregation' or 'drop = true'"
            ),
            'cardinality.instruments."c"': "'drop = true' cannot be combined with other keys",
        }

    def test_rules_keep_every_field_and_exact_names_come_first(self) -> None:
        config = load_config(
            env={},
            service={"name": "s"},
            cardinality={
                "instruments": {
                    "Work.*": {
                        "attributes": ["a"],
                        "max_series": 7,
                        "buckets": [1.0, 2.0],
                    },
                    "b?": {"drop": True},
                    "Work.Exact": {"max_series": 3},
                }
            },
        )
        rules = [
            (r.pattern, r.attributes, r.drop, r.max_series, r.buckets)
            for r in config.cardinality.instruments
        ]
        assert rules == [
            ("work.exact", None, False, 3, None),
            ("work.*", ("a",), False, 7, (1.0, 2.0)),
            ("b?", None, True, None, None),
        ]

    def test_an_unknown_key_without_a_close_match_gets_no_guess(self) -> None:
        problems = self._problems(service={"name": "s", "zzzzzz": 1})
        assert problems["service.zzzzzz"].startswith("unknown key (valid: ")


class TestHistogramAggregation:
    """``aggregation``, ``max_size`` and ``max_scale``: per rule and as the default."""

    def _problems(self, **cardinality: object) -> dict[str, str]:
        with pytest.raises(ConfigError) as caught:
            load_config(env={}, service={"name": "s"}, cardinality=cardinality)
        return {problem.key: problem.message for problem in caught.value.problems}

    def test_a_rule_of_only_aggregation_keys_is_a_rule(self) -> None:
        config = load_config(
            env={},
            service={"name": "s"},
            cardinality={
                "instruments": {
                    "a": {"aggregation": "exponential"},
                    "b": {"aggregation": "exponential", "max_scale": -4},
                    "c": {"aggregation": "exponential", "max_size": 2},
                }
            },
        )
        rules = {rule.pattern: rule for rule in config.cardinality.instruments}
        assert rules["a"].aggregation == "exponential"
        assert rules["b"].max_scale == -4
        assert rules["c"].max_size == 2
        assert config.cardinality.histogram_aggregation == "explicit"
        assert config.cardinality.histogram_max_size == 160
        assert config.cardinality.histogram_max_scale == 20

    @pytest.mark.parametrize("key", ["aggregation", "max_size", "max_scale"])
    def test_drop_takes_no_aggregation_key(self, key: str) -> None:
        value = "exponential" if key == "aggregation" else 4
        problems = self._problems(instruments={"x": {"drop": True, key: value}})
        assert problems == {
            'cardinality.instruments."x"': "'drop = true' cannot be combined with other keys"
        }

    @pytest.mark.parametrize("key", ["max_size", "max_scale"])
    def test_size_and_scale_need_an_exponential_histogram(self, key: str) -> None:
        problems = self._problems(instruments={"x": {key: 4}})
        assert problems == {
            f'cardinality.instruments."x".{key}': "applies to exponential histograms"
            " only; set aggregation = 'exponential' too"
        }
        problems = self._problems(
            instruments={"x": {"aggregation": "explicit", key: 4}},
            histogram_aggregation="exponential",
        )
        assert list(problems) == [f'cardinality.instruments."x".{key}']

    def test_buckets_need_an_explicit_histogram(self) -> None:
        problems = self._problems(
            instruments={"x": {"buckets": [1]}}, histogram_aggregation="exponential"
        )
        assert list(problems) == ['cardinality.instruments."x".buckets']
        assert (
            "aggregation = 'explicit'"
            in problems['cardinality.instruments."x".buckets']
        )
        config = load_config(
            env={},
            service={"name": "s"},
            cardinality={
                "histogram_aggregation": "exponential",
                "instruments": {
                    "x": {"aggregation": "explicit", "buckets": [1]},
                    "y": {"max_size": 8},
                },
            },
        )
        assert len(config.cardinality.instruments) == 2

    def test_the_otel_variable_sets_the_default(self) -> None:
        name = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
        for raw, expected in (
            ("base2_exponential_bucket_histogram", "exponential"),
            (" BASE2_Exponential_Bucket_Histogram ", "exponential"),
            ("explicit_bucket_histogram", "explicit"),
        ):
            config = load_config(env={name: raw, "OTEL_SERVICE_NAME": "s"})
            assert config.cardinality.histogram_aggregation == expected
