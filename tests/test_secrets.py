"""
Secrets stay secret: a password in an endpoint URL and an OTLP header value never
reach stdout, stderr, JSON logs, ``/metrics``, ``/readyz``, reprs or messages.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import clean_env, stop_process
from ron_metrics import ConfigError, load_config
from ron_metrics.config.plain import mask_userinfo
from ron_metrics.testing import reserved_port

BIN = Path(sys.executable).parent
PASSWORD = "pw-SECRET-1"  # noqa: S105 - a planted value the test hunts for
TOKEN = "tok-SECRET-2"  # noqa: S105 - a planted value the test hunts for


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host:4318/v1", "http://user:***@host:4318/v1"),
        ("https://token@host", "https://***@host"),
        ("http://host:4318/v1/metrics", "http://host:4318/v1/metrics"),
        ("http://a:b@c@host/x@y", "http://a:***@host/x@y"),
        ("http://user:@host", "http://user:***@host"),
    ],
)
def test_userinfo_is_masked(url: str, shown: str) -> None:
    """The password (or a lone user name, which may be a token) is masked."""
    assert mask_userinfo(url) == shown


def _env(dead: int, protocol: str = "http/protobuf") -> dict[str, str]:
    return clean_env(
        OTEL_SERVICE_NAME="leaks",
        OTEL_METRICS_EXPORTER="otlp,prometheus",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://user:{PASSWORD}@127.0.0.1:{dead}",
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer {TOKEN}",
        OTEL_METRIC_EXPORT_INTERVAL="300",
        OTEL_EXPORTER_OTLP_TIMEOUT="200",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT="0",
    )


def assert_clean(text: str, where: str) -> None:
    assert PASSWORD not in text, f"password in {where}: {text[-2000:]}"
    assert TOKEN not in text, f"token in {where}: {text[-2000:]}"


def test_check_config_masks_url_password_and_headers() -> None:
    """check-config shows user:***@ and *** for header values."""
    result = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config"],
        env=_env(reserved_port()),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout + result.stderr, "check-config")
    assert "user:***@" in result.stdout


def test_reprs_and_errors_mask_the_password() -> None:
    """repr(config), to_dict() and a ConfigError about the endpoint show no secret."""
    config = load_config(env=_env(reserved_port()))
    assert_clean(repr(config) + repr(config.to_dict()), "repr")
    with pytest.raises(ConfigError) as caught:
        load_config(env=_env(reserved_port(), protocol="grpc"))
    assert caught.value.keys == ("exporter.otlp.endpoint",)
    assert_clean(str(caught.value), "a ConfigError")


def test_a_failing_export_leaks_nothing_anywhere() -> None:
    """Exports failing against a dead collector: logs, /metrics, /readyz are clean."""
    port = reserved_port()
    env = {**_env(reserved_port()), "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}
    code = (
        "import sys, time\n"
        "from opentelemetry import metrics\n"
        "metrics.get_meter('s').create_counter('s.jobs').add(1)\n"
        "while not sys.stdin.read(1) == 'q':\n"
        "    time.sleep(0.05)\n"
    )
    job = subprocess.Popen(
        [str(BIN / "ron-metrics"), "run", "--", sys.executable, "-c", code],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bodies = []
        deadline = time.monotonic() + 60
        while True:
            try:
                readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the exposer never answered"
                time.sleep(0.05)
                continue
            if "otlp_export_failing" in readyz.text:
                bodies.append(readyz.text)
                break
            assert time.monotonic() < deadline, readyz.text
            time.sleep(0.1)
        bodies.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)
        _, stderr = job.communicate("q", timeout=60)
    finally:
        stop_process(job)
    assert job.returncode == 0, stderr
    assert "s_jobs_total" in bodies[1]
    assert_clean("\n".join(bodies), "/metrics or /readyz")
    assert "otlp_export_failed" in stderr  # the failure was logged
    assert "user:***@" in stderr  # with the endpoint, masked
    assert_clean(stderr, "the log")


def test_library_log_lines_are_scrubbed() -> None:
    """A URL with a password in another library's message is masked in our stream."""
    import logging

    from ron_metrics.logs import JsonLineFormatter

    record = logging.LogRecord(
        "opentelemetry.exporter", logging.ERROR, __file__, 1,
        "Failed to export to %s", (f"http://user:{PASSWORD}@h:1/v1",), None,
    )  # fmt: skip
    line = JsonLineFormatter().format(record)
    assert_clean(line, "a library line")
    assert "user:***@h:1" in line


DECLARATIVE_WITH_SECRETS = """
file_format: "1.0"
resource:
  attributes:
    - name: service.name
      value: checkout
meter_provider:
  readers:
    - periodic:
        exporter:
          otlp_http:
            endpoint: http://user:${{RON_TEST_PASSWORD}}@127.0.0.1:{port}/v1/metrics
            headers:
              - name: authorization
                value: Bearer ${{RON_TEST_TOKEN}}
"""


def test_secrets_substituted_into_a_declarative_file_stay_secret(
    tmp_path: Path,
) -> None:
    """${VAR} substitution puts the secret in the config: check-config still hides it,
    and a TLS key file's contents never appear either, even when the key is refused."""
    config = tmp_path / "otel.yaml"
    config.write_text(DECLARATIVE_WITH_SECRETS.format(port=reserved_port()))
    config.chmod(0o600)
    env = clean_env(
        OTEL_CONFIG_FILE=str(config),
        RON_TEST_PASSWORD=PASSWORD,
        RON_TEST_TOKEN=TOKEN,
    )
    result = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    # The substitution (from the process environment) did put the secrets in.
    probe = (
        "import ron_metrics; c = ron_metrics.load_config(); o = c.exporter.otlp; "
        f"print(o.headers['authorization'] == 'Bearer {TOKEN}', "
        f"'{PASSWORD}' in str(o.endpoint))"
    )
    substituted = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert substituted.stdout.split() == ["True", "True"], substituted.stderr
    assert_clean(result.stdout + result.stderr, "check-config of a declarative file")
    assert "user:***@" in result.stdout
    key = tmp_path / "key.pem"
    key.write_text(f"-----BEGIN PRIVATE KEY-----\n{TOKEN}\n-----END PRIVATE KEY-----\n")
    key.chmod(0o644)  # too open: refused, and the refusal must not quote it
    tls_env = clean_env(
        OTEL_SERVICE_NAME="s",
        RON_METRICS_EXPORTER__PROMETHEUS__TLS__CERT=str(key),
        RON_METRICS_EXPORTER__PROMETHEUS__TLS__KEY=str(key),
    )
    refused = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config"],
        env=tls_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert_clean(refused.stdout + refused.stderr, "a refused TLS key")
    key.chmod(0o600)
    unloadable = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config"],
        env=tls_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert unloadable.returncode == 2, unloadable.stdout + unloadable.stderr
    assert "do not load" in unloadable.stdout + unloadable.stderr
    assert_clean(unloadable.stdout + unloadable.stderr, "an unloadable TLS key")
