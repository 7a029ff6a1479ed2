from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import StartFn, prometheus_config
from ron_metrics import ConfigError
from ron_metrics.testing import sample_value
from tls_material import Pki, make_pki
from wire import port_of


@pytest.fixture(name="pki", scope="module")
def _pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_exporter(pki: Pki, *, mutual: bool = False, **extra: Any) -> dict[str, Any]:
    tls = {"cert": pki.path("server.pem"), "key": pki.path("server.key")}
    if mutual:
        tls["client_ca"] = pki.path("ca.pem")
    return prometheus_config(tls=tls, **extra)


def client_context(pki: Pki, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if cert is not None:
        context.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    return context


def wait_for(runtime: Any, name: str, value: float, **labels: str) -> float | None:
    deadline = time.monotonic() + 60
    while (
        seen := sample_value(runtime, name, **labels)
    ) != value and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


class TestRotation:
    def test_certificate_rotation_serves_the_same_socket(self, pki: Pki) -> None:
        """A reload with a new certificate: same port, new handshakes use the new one."""
        from ron_metrics import start
        from ron_metrics.testing import config_for_tests, reserved_port

        bind = f"127.0.0.1:{reserved_port()}"

        def config(name: str) -> Any:
            tls = {"cert": pki.path(f"{name}.pem"), "key": pki.path(f"{name}.key")}
            return config_for_tests(
                exporter={
                    "kind": "prometheus",
                    "prometheus": {"bind": bind, "tls": tls},
                }
            )

        old_trust = client_context(pki)
        new_trust = ssl.create_default_context(cafile=pki.path("rogue-ca.pem"))
        with start(config("server"), set_global=False) as runtime:
            address = runtime.address
            assert httpx.get(f"{address}/healthz", verify=old_trust).status_code == 200
            assert runtime.reload(config("server-next")) == (
                "exporter.prometheus.tls.cert",
                "exporter.prometheus.tls.key",
            )
            assert runtime.address == address
            assert httpx.get(f"{address}/healthz", verify=new_trust).status_code == 200
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{address}/healthz", verify=old_trust)


class TestServerTls:
    def test_trusted_client_is_served_over_tls(
        self, start_runtime: StartFn, pki: Pki
    ) -> None:
        """A client trusting our CA gets /metrics over https."""
        runtime = start_runtime(exporter=tls_exporter(pki))
        assert str(runtime.address).startswith("https://127.0.0.1:")
        response = httpx.get(
            f"{runtime.address}/metrics", verify=client_context(pki), timeout=10
        )
        assert response.status_code == 200
        assert "# TYPE tls_handshake_failures_total counter" in response.text

    def test_alpn_offers_only_http11(self, start_runtime: StartFn, pki: Pki) -> None:
        """A client offering h2 first still gets http/1.1 by ALPN."""
        runtime = start_runtime(exporter=tls_exporter(pki))
        context = client_context(pki)
        context.set_alpn_protocols(["h2", "http/1.1"])
        with (
            socket.create_connection(
                ("127.0.0.1", port_of(str(runtime.address))), timeout=5
            ) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in {"TLSv1.2", "TLSv1.3"}

    def test_plain_http_to_tls_port_is_a_counted_failure(
        self, start_runtime: StartFn, pki: Pki
    ) -> None:
        """Plain HTTP sent to the TLS port fails the handshake and is counted."""
        runtime = start_runtime(exporter=tls_exporter(pki))
        with pytest.raises(httpx.HTTPError):
            httpx.get(
                str(runtime.address).replace("https://", "http://") + "/metrics",
                timeout=5,
            )
        assert wait_for(runtime, "tls_handshake_failures_total", 1) == 1

    def test_old_tls_versions_refused(self, start_runtime: StartFn, pki: Pki) -> None:
        """A client limited to TLS 1.1 cannot connect."""
        runtime = start_runtime(exporter=tls_exporter(pki))
        context = client_context(pki)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the point of the test
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            socket.create_connection(
                ("127.0.0.1", port_of(str(runtime.address))), timeout=5
            ) as raw,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


class TestMutualTls:
    @pytest.mark.parametrize("cert", [None, "rogue-client"])
    def test_missing_or_untrusted_client_cert_fails(
        self, start_runtime: StartFn, pki: Pki, cert: str | None
    ) -> None:
        """With client_ca, no client cert or one from another CA is refused and counted."""
        runtime = start_runtime(exporter=tls_exporter(pki, mutual=True))
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            httpx.get(
                f"{runtime.address}/metrics",
                verify=client_context(pki, cert),
                timeout=5,
            )
        assert wait_for(runtime, "tls_handshake_failures_total", 1) == 1

    def test_handshake_failure_is_logged_with_the_peer(
        self,
        start_runtime: StartFn,
        pki: Pki,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A failed handshake writes one JSON line naming the peer and the error kind."""
        caplog.set_level(logging.INFO, logger="ron_metrics.exposer")
        runtime = start_runtime(exporter=tls_exporter(pki, mutual=True))
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            httpx.get(
                f"{runtime.address}/metrics", verify=client_context(pki), timeout=5
            )
        assert wait_for(runtime, "tls_handshake_failures_total", 1) == 1
        events = [
            json.loads(r.getMessage())
            for r in caplog.records
            if r.name == "ron_metrics.exposer"
        ]
        failed = [e for e in events if e["event"] == "tls_handshake_failed"]
        assert len(failed) == 1
        assert str(failed[0]["peer_addr"]).startswith("127.0.0.1:")
        assert failed[0]["error"]

    def test_trusted_client_cert_is_served(
        self, start_runtime: StartFn, pki: Pki
    ) -> None:
        """A client certificate signed by client_ca is accepted."""
        runtime = start_runtime(exporter=tls_exporter(pki, mutual=True))
        response = httpx.get(
            f"{runtime.address}/healthz",
            verify=client_context(pki, "client"),
            timeout=5,
        )
        assert response.status_code == 200

    def test_failure_rate_degrades_readiness_until_successes_dominate(
        self, start_runtime: StartFn, pki: Pki
    ) -> None:
        """Five failed handshakes degrade readiness; it returns once most succeed."""
        runtime = start_runtime(exporter=tls_exporter(pki, mutual=True))
        for _ in range(5):
            with pytest.raises((httpx.HTTPError, ssl.SSLError)):
                httpx.get(
                    f"{runtime.address}/healthz", verify=client_context(pki), timeout=5
                )
        assert wait_for(runtime, "tls_handshake_failures_total", 5) == 5
        assert "prometheus: tls_handshake_failures" in runtime.readiness().degraded
        statuses = [
            httpx.get(
                f"{runtime.address}/readyz",
                verify=client_context(pki, "client"),
                timeout=5,
            ).status_code
            for _ in range(6)
        ]
        # One success no longer resets the verdict: 5 failures of 6, ..., of 10
        # handshakes still make half; the sixth success tips the rate below it.
        assert statuses == [503] * 5 + [200]
        assert runtime.readiness().ready

    def test_port_probes_are_not_handshake_failures(
        self, start_runtime: StartFn, pki: Pki
    ) -> None:
        """TCP connect-and-close on the TLS port counts as a probe; readiness holds."""
        runtime = start_runtime(exporter=tls_exporter(pki))
        for _ in range(8):
            socket.create_connection(
                ("127.0.0.1", port_of(str(runtime.address))), timeout=5
            ).close()
        assert wait_for(runtime, "rejected_total", 8, reason="tls_probe") == 8
        assert sample_value(runtime, "tls_handshake_failures_total") == 0
        with httpx.Client(verify=client_context(pki), timeout=5) as client:
            assert client.get(f"{runtime.address}/readyz").status_code == 200


class TestKeyFileSafety:
    def test_key_readable_by_others_is_refused(
        self, start_runtime: StartFn, pki: Pki, tmp_path: Path
    ) -> None:
        """A key wider than 0600 is a ConfigError naming the key file."""
        loose = tmp_path / "loose.key"
        loose.write_bytes(Path(pki.path("server.key")).read_bytes())
        loose.chmod(0o644)
        with pytest.raises(ConfigError) as caught:
            start_runtime(
                exporter=prometheus_config(
                    tls={"cert": pki.path("server.pem"), "key": str(loose)}
                )
            )
        assert caught.value.keys == ("exporter.prometheus.tls.key",)
        assert str(loose) in str(caught.value) and "0600" in str(caught.value)

    @pytest.mark.parametrize("which", ["cert", "key"])
    def test_symlinked_material_is_refused(
        self, start_runtime: StartFn, pki: Pki, tmp_path: Path, which: str
    ) -> None:
        """A symlinked certificate or key is refused, naming the file."""
        tls = {"cert": pki.path("server.pem"), "key": pki.path("server.key")}
        link = tmp_path / f"link.{which}"
        link.symlink_to(tls[which])
        tls[which] = str(link)
        with pytest.raises(ConfigError, match="symlink") as caught:
            start_runtime(exporter=prometheus_config(tls=tls))
        assert caught.value.keys == (f"exporter.prometheus.tls.{which}",)

    def test_missing_cert_and_key_are_both_reported(
        self, start_runtime: StartFn, tmp_path: Path
    ) -> None:
        """Independent problems come in one error: both missing files are named."""
        with pytest.raises(ConfigError) as caught:
            start_runtime(
                exporter=prometheus_config(
                    tls={
                        "cert": str(tmp_path / "none.pem"),
                        "key": str(tmp_path / "none.key"),
                    }
                )
            )
        assert caught.value.keys == (
            "exporter.prometheus.tls.cert",
            "exporter.prometheus.tls.key",
        )

    def test_missing_file_is_refused(
        self, start_runtime: StartFn, pki: Pki, tmp_path: Path
    ) -> None:
        """A missing certificate file is a ConfigError, not an OSError."""
        with pytest.raises(ConfigError, match="does not exist"):
            start_runtime(
                exporter=prometheus_config(
                    tls={
                        "cert": str(tmp_path / "none.pem"),
                        "key": pki.path("server.key"),
                    }
                )
            )

    def test_mismatched_key_is_refused(self, start_runtime: StartFn, pki: Pki) -> None:
        """A key that does not match the certificate is a ConfigError."""
        with pytest.raises(ConfigError, match="do not load"):
            start_runtime(
                exporter=prometheus_config(
                    tls={"cert": pki.path("server.pem"), "key": pki.path("client.key")}
                )
            )

    def test_material_is_not_written_anywhere(
        self, start_runtime: StartFn, pki: Pki, tmp_path: Path
    ) -> None:
        """Loading TLS material leaves no file behind in the temp or working directories."""
        before = set(os.listdir("/tmp")) | set(os.listdir(os.getcwd()))
        start_runtime(exporter=tls_exporter(pki))
        after = set(os.listdir("/tmp")) | set(os.listdir(os.getcwd()))
        assert not {
            name
            for name in after - before
            if "key" in name or "cert" in name or name.endswith(".pem")
        }
