from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import clean_env, demo_command
from ron_metrics.cli import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(text))
    return path


def check_config_process(path: Path) -> subprocess.CompletedProcess[str]:
    """``ron-metrics check-config PATH`` in a fresh interpreter (no OTEL_*/RON_METRICS_*)."""
    return subprocess.run(
        [sys.executable, "-m", "ron_metrics", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=clean_env(),
    )


class TestCheckConfig:
    def test_valid_config_prints_effective_config_and_digest(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """check-config exits 0, prints the config with secrets masked, and the digest."""
        monkeypatch.delenv("RON_METRICS_CONFIG", raising=False)
        path = write(
            tmp_path,
            """
            [service]
            name = "api"
            [exporter.otlp.headers]
            api-key = "very-secret-key"
            """,
        )
        assert main(["check-config", str(path)]) == 0
        out = capsys.readouterr().out
        body, _, digest_line = out.rpartition("digest: ")
        config = json.loads(body)
        assert config["service"]["name"] == "api"
        assert config["exporter"]["otlp"]["headers"] == {"api-key": "***"}
        assert "very-secret-key" not in out
        assert (
            digest_line.startswith("blake3:")
            and len(digest_line.strip()) == len("blake3:") + 64
        )

    def test_invalid_config_exits_2_with_every_problem(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check-config exits 2 and lists every problem, each with its key, on stderr."""
        path = write(
            tmp_path,
            """
            [service]
            nmae = "api"
            [exporter]
            kind = "carrier-pigeon"
            """,
        )
        assert main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "service.nmae: unknown key; did you mean 'name'?" in err
        assert "service.name: is required" in err
        assert "exporter.kind: must be one of" in err

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            (b'[service]\nname = "\xff"\n', "is not UTF-8"),
            (b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested"),
            (b"x" * (1024 * 1024 + 1), "larger than"),
            (b'[exporter.prometheus]\nbind = "127.0.0.1:\xc2\xb2"\n', "HOST:PORT"),
        ],
        ids=["not-utf8", "deep", "huge", "superscript-port"],
    )
    def test_malformed_file_exits_2_without_traceback(
        self, tmp_path: Path, content: bytes, fragment: str
    ) -> None:
        """Malformed input is a ConfigError: exit 2, the problem named, no traceback."""
        path = tmp_path / "bad.toml"
        path.write_bytes(content)
        result = check_config_process(path)
        assert result.returncode == 2
        assert fragment in result.stderr
        assert "Traceback" not in result.stderr

    def test_deprecations_are_printed(self, tmp_path: Path) -> None:
        """check-config shows a deprecated key as a JSON warning line."""
        path = write(
            tmp_path,
            """
            [service]
            name = "api"
            [exporter.prometheus]
            listen_addr = "127.0.0.1:9999"
            """,
        )
        result = check_config_process(path)
        assert result.returncode == 0
        warning = json.loads(result.stderr.splitlines()[0])
        assert (warning["event"], warning["key"]) == (
            "deprecated_key",
            "exporter.prometheus.listen_addr",
        )

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the package version and exits 0."""
        with pytest.raises(SystemExit) as exited:
            main(["--version"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith("ron-metrics 0.")


def read_event(
    process: subprocess.Popen[str], event: str, timeout: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if f'"event":"{event}"' in line:
            found: dict[str, object] = json.loads(line)
            return found
    pytest.fail(f"demo never logged {event!r}")


@pytest.fixture(name="demo")
def _demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    path = write(tmp_path, '[exporter.prometheus]\nbind = "127.0.0.1:0"\n')
    argv, env = demo_command(str(path))
    process = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        yield process, read_event(process, "listening")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


class TestDemo:
    def test_demo_serves_workload_and_exits_cleanly(
        self, demo: tuple[subprocess.Popen[str], dict[str, object]]
    ) -> None:
        """The demo logs one listening line, serves its workload, and exits 0 on SIGTERM."""
        process, listening = demo
        address = str(listening["address"])
        assert address.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 20
        body = ""
        while "cache_lookups_total" not in body and time.monotonic() < deadline:
            body = httpx.get(f"{address}/metrics", timeout=5).text
            time.sleep(0.2)
        assert "http_server_requests_total{" in body
        assert "http_server_request_duration_seconds_bucket{" in body
        assert 'otel_metric_overflow="true"' in body  # the burst tripped the limit
        assert "user_id" not in body  # the allowlist dropped it
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0

    @pytest.mark.peer
    @pytest.mark.parametrize(
        "content",
        [
            b'[service]\nname = "\xff\xfe"\n',  # not UTF-8
            b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",  # nested far too deep
            b'[service]\namnesia = "yes"\n',  # a string is not a boolean
        ],
        ids=["not-utf8", "deep-nesting", "coerced-bool"],
    )
    def test_sighup_with_a_malformed_file_changes_nothing(
        self,
        demo: tuple[subprocess.Popen[str], dict[str, object]],
        tmp_path: Path,
        content: bytes,
    ) -> None:
        """A malformed file on SIGHUP is refused and logged; the demo keeps serving."""
        process, listening = demo
        (tmp_path / "c.toml").write_bytes(content)
        process.send_signal(signal.SIGHUP)
        rejected = read_event(process, "reload_rejected")
        assert "invalid configuration" in str(rejected["error"])
        address = str(listening["address"])
        assert httpx.get(f"{address}/readyz", timeout=5).status_code == 200
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0

    def test_sighup_reloads_the_file_and_switches_to_both(
        self, demo: tuple[subprocess.Popen[str], dict[str, object]], tmp_path: Path
    ) -> None:
        """SIGHUP re-reads the config file: the demo switches to both and pushes to rotel."""
        from collector import Rotel

        process, _ = demo
        rotel = Rotel(tmp_path)
        rotel.start()
        try:
            (tmp_path / "c.toml").write_text(
                '[exporter]\nkind = "both"\n[exporter.prometheus]\nbind = "127.0.0.1:0"\n'
                f'[exporter.otlp]\nendpoint = "{rotel.grpc_endpoint}"\ninterval = "500ms"\ntimeout = "400ms"\n'
            )
            process.send_signal(signal.SIGHUP)
            applied = read_event(process, "reload_applied")
            assert "exporter.kind" in applied["changed"]  # type: ignore[operator]  # parsed JSON: a list here
            point = rotel.wait_for("http.server.requests", lambda p: (p.value or 0) > 0)
            assert point is not None
            assert point.resource["service.name"] == "ron-metrics-demo"
        finally:
            rotel.stop()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
