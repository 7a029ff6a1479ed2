"""
Files and sockets the exposer touches: no hang, no takeover, no retargetable path.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from ron_metrics import ConfigError, ExposerError
from ron_metrics.config import TlsConfig
from ron_metrics.safety import (
    bind_unix_socket,
    build_server_ssl_context,
    check_private_dir,
    remove_unix_socket,
)
from tls_material import Pki, make_pki


@pytest.fixture(name="pki", scope="module")
def _pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def user_owned_symlink(link: Path, target: Path, owner: int = 65534) -> None:
    """A symlink an ordinary user could retarget (as root: hand it to ``owner``)."""
    link.symlink_to(target)
    if os.geteuid() == 0:
        os.lchown(link, owner, owner)


def tls(pki: Pki, **paths: str) -> TlsConfig:
    files = {"cert": pki.path("server.pem"), "key": pki.path("server.key")}
    files.update(paths)
    return TlsConfig(**files)


class TestTlsFiles:
    def test_fifo_as_key_is_refused_without_hanging(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """A FIFO given as the key is refused at once (no writer needed to open it)."""
        fifo = tmp_path / "key.fifo"
        os.mkfifo(fifo, 0o600)
        result: list[BaseException] = []

        def build() -> None:
            try:
                build_server_ssl_context(tls(pki, key=str(fifo)))
            except BaseException as exc:  # the test inspects whatever was raised
                result.append(exc)

        worker = threading.Thread(target=build, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "opening a FIFO hung start-up"
        assert isinstance(result[0], ConfigError)
        assert "is a FIFO" in str(result[0])

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to another uid")
    @pytest.mark.parametrize("which", ["cert", "key", "client_ca"])
    def test_material_owned_by_another_user_is_refused(
        self, pki: Pki, tmp_path: Path, which: str
    ) -> None:
        """A private (0600) file someone else owns is never loaded, naming the key."""
        source = {"cert": "server.pem", "key": "server.key", "client_ca": "ca.pem"}
        copy = tmp_path / f"{which}.pem"
        copy.write_bytes(Path(pki.path(source[which])).read_bytes())
        copy.chmod(0o600)
        os.chown(copy, 65534, 65534)
        with pytest.raises(ConfigError, match="not owned by this user") as caught:
            build_server_ssl_context(tls(pki, **{which: str(copy)}))
        assert caught.value.keys == (f"exporter.prometheus.tls.{which}",)

    def test_oversized_material_is_refused_without_reading_it(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """A certificate over 1 MiB (here a sparse 4 GiB file) is refused by size."""
        huge = tmp_path / "huge.pem"
        with huge.open("wb") as handle:
            handle.truncate(4 * 2**30)
        huge.chmod(0o600)
        with pytest.raises(ConfigError, match="larger than 1048576 bytes") as caught:
            build_server_ssl_context(tls(pki, cert=str(huge)))
        assert caught.value.keys == ("exporter.prometheus.tls.cert",)

    def test_context_keeps_the_library_defaults_and_adds_its_own(
        self, pki: Pki
    ) -> None:
        """Options are added to OpenSSL's safe defaults, never replace them."""
        defaults = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options
        context = build_server_ssl_context(tls(pki))
        assert context.options & defaults == defaults
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.verify_mode == ssl.CERT_NONE  # no client CA configured

    @pytest.mark.parametrize("which", ["cert", "client_ca"])
    def test_world_writable_certificates_are_refused(
        self, pki: Pki, tmp_path: Path, which: str
    ) -> None:
        """A certificate or client CA anyone can rewrite is refused, naming the key."""
        source = Path(pki.path("server.pem" if which == "cert" else "ca.pem"))
        copy = tmp_path / f"{which}.pem"
        copy.write_bytes(source.read_bytes())
        copy.chmod(0o666)
        with pytest.raises(ConfigError, match="world-writable") as caught:
            build_server_ssl_context(tls(pki, **{which: str(copy)}))
        assert caught.value.keys == (f"exporter.prometheus.tls.{which}",)

    @pytest.mark.parametrize("owner", [1, 65534])
    def test_symlinked_ancestor_of_the_key_is_refused(
        self, pki: Pki, tmp_path: Path, owner: int
    ) -> None:
        """A user-owned symlink anywhere above the key file is refused (any uid but 0)."""
        real = tmp_path / "real"
        real.mkdir()
        key = real / "server.key"
        key.write_bytes(Path(pki.path("server.key")).read_bytes())
        key.chmod(0o600)
        user_owned_symlink(tmp_path / "via", real, owner)
        with pytest.raises(ConfigError, match="symlink not owned by root"):
            build_server_ssl_context(tls(pki, key=str(tmp_path / "via" / "server.key")))

    def test_plain_files_still_load(self, pki: Pki) -> None:
        """The ordinary, private files load."""
        assert build_server_ssl_context(tls(pki)) is not None


class TestUnixSockets:
    def test_live_socket_is_never_taken_over(self, tmp_path: Path) -> None:
        """A second instance on the path of a live socket fails, naming the path."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        path = str(run / "m.sock")
        first, identity = bind_unix_socket(path)
        first.listen()
        try:
            with pytest.raises(ExposerError, match="in use") as caught:
                bind_unix_socket(path)
            assert path in str(caught.value)
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            first.close()
            remove_unix_socket(path, identity)

    def test_only_our_own_inode_is_removed(self, tmp_path: Path) -> None:
        """Stopping an instance whose stale path was replaced leaves the new socket."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        path = str(run / "m.sock")
        first, first_identity = bind_unix_socket(path)
        first.close()  # stale now: nothing accepts on it
        second, second_identity = bind_unix_socket(path)
        try:
            remove_unix_socket(path, first_identity)
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            second.close()
            remove_unix_socket(path, second_identity)
        assert not os.path.exists(path)

    def test_symlinked_ancestor_of_socket_dir_is_refused(self, tmp_path: Path) -> None:
        """A user-owned symlink above the socket directory is refused."""
        real = tmp_path / "real"
        (real / "run").mkdir(parents=True, mode=0o700)
        user_owned_symlink(tmp_path / "via", real)
        with pytest.raises(ExposerError, match="symlink not owned by root"):
            bind_unix_socket(str(tmp_path / "via" / "run" / "m.sock"))

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid")
    def test_ancestors_owned_by_other_users_are_fine(self, tmp_path: Path) -> None:
        """Only symlinks are judged by owner: a plain directory of another uid is fine."""
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        check_private_dir(theirs / "run")
        assert stat.S_IMODE((theirs / "run").stat().st_mode) == 0o700

    def test_a_directory_created_meanwhile_by_another_worker_is_accepted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Workers starting together race to create the private directory: the one
        that loses the race judges the directory the winner made, and starts.
        """
        target = tmp_path / "run"
        real_mkdir = Path.mkdir

        def other_worker_first(self: Path, *args: Any, **kwargs: Any) -> None:
            if self == target and not target.exists():
                real_mkdir(target, mode=0o700)  # the other worker wins the race
            real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", other_worker_first)
        check_private_dir(target)
        assert stat.S_IMODE(target.stat().st_mode) == 0o700

    def test_stale_probe_does_not_disturb_a_free_path(self, tmp_path: Path) -> None:
        """Binding a fresh path works and the socket accepts."""
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        sock, identity = bind_unix_socket(str(run / "m.sock"))
        sock.listen()
        try:
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(run / "m.sock"))
        finally:
            sock.close()
            remove_unix_socket(str(run / "m.sock"), identity)


class TestRefusalsNameTheirCause:
    """Each refusal names the key or path and why."""

    def test_only_a_stale_socket_of_ours_is_replaced(self, tmp_path: Path) -> None:
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        path = run / "m.sock"
        path.write_text("not a socket")
        with pytest.raises(ExposerError, match="exists and is not a socket we own"):
            bind_unix_socket(str(path))
        path.unlink()
        path.symlink_to(tmp_path / "elsewhere")
        with pytest.raises(ExposerError, match="is a symlink; refusing to replace it"):
            bind_unix_socket(str(path))

    def test_the_socket_is_private(self, tmp_path: Path) -> None:
        run = tmp_path / "run"
        sock, identity = bind_unix_socket(str(run / "m.sock"))
        try:
            assert stat.S_IMODE((run / "m.sock").lstat().st_mode) == 0o600
            assert stat.S_IMODE(run.stat().st_mode) == 0o700
            assert [p.name for p in run.iterdir()] == ["m.sock"]  # no temporary left
        finally:
            sock.close()
            remove_unix_socket(str(run / "m.sock"), identity)

    def test_a_path_too_long_to_bind_is_an_exposer_error(self, tmp_path: Path) -> None:
        run = tmp_path / "run"
        with pytest.raises(ExposerError, match="cannot bind unix:"):
            bind_unix_socket(str(run / ("s" * 120)))
        assert list(run.iterdir()) == []

    def test_tls_needs_both_files(self, pki: Pki) -> None:
        with pytest.raises(
            ConfigError, match="TLS needs both 'cert' and 'key'"
        ) as caught:
            build_server_ssl_context(TlsConfig(cert=pki.path("server.pem")))
        assert caught.value.keys == ("exporter.prometheus.tls",)

    def test_a_key_of_another_certificate_names_the_section(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        other = make_pki(tmp_path / "other")
        with pytest.raises(
            ConfigError, match="certificate and key do not load"
        ) as caught:
            build_server_ssl_context(tls(pki, key=other.path("server.key")))
        assert caught.value.keys == ("exporter.prometheus.tls",)

    @pytest.mark.parametrize(
        "content",
        [b"not a certificate", "certificat\u00e9".encode()],
        ids=["text", "utf-8"],
    )
    def test_a_client_ca_that_is_not_pem_names_its_key(
        self, pki: Pki, tmp_path: Path, content: bytes
    ) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(content)
        ca.chmod(0o644)
        with pytest.raises(ConfigError, match="not a valid PEM CA bundle") as caught:
            build_server_ssl_context(tls(pki, client_ca=str(ca)))
        assert caught.value.keys == ("exporter.prometheus.tls.client_ca",)


class TestPrivateDirectory:
    def test_missing_parents_are_created_private(self, tmp_path: Path) -> None:
        check_private_dir(tmp_path / "a" / "b" / "run")
        assert stat.S_IMODE((tmp_path / "a" / "b" / "run").stat().st_mode) == 0o700

    def test_each_refusal_says_why(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(ExposerError, match="cannot create socket directory"):
            check_private_dir(blocker / "run")
        with pytest.raises(
            ExposerError, match=r"socket directory .* is not a directory"
        ):
            check_private_dir(blocker)
        (tmp_path / "link").symlink_to(tmp_path)
        with pytest.raises(ExposerError, match="is a symlink; refusing it"):
            check_private_dir(tmp_path / "link")
        open_dir = tmp_path / "open"
        open_dir.mkdir(mode=0o755)
        open_dir.chmod(0o755)
        with pytest.raises(ExposerError, match="has mode 755; it must be 0700"):
            check_private_dir(open_dir, "group directory")

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid")
    def test_a_directory_of_another_user_is_refused(self, tmp_path: Path) -> None:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(ExposerError, match="is not owned by this user"):
            check_private_dir(theirs)


class TestTlsChecks:
    def test_check_config_runs_the_same_checks(self, pki: Pki, tmp_path: Path) -> None:
        from ron_metrics.safety import check_tls_files

        check_tls_files(tls(pki))
        with pytest.raises(ConfigError) as caught:
            check_tls_files(tls(pki, key=str(tmp_path / "missing.key")), "tls")
        assert caught.value.keys == ("tls.key",)

    def test_only_world_writable_certificates_are_refused(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """Other permission bits (here others' execute) are not the check's business."""
        copy = tmp_path / "cert.pem"
        copy.write_bytes(Path(pki.path("server.pem")).read_bytes())
        copy.chmod(0o645)
        assert build_server_ssl_context(tls(pki, cert=str(copy))) is not None

    def test_a_path_that_cannot_be_opened_names_its_key(self, pki: Pki) -> None:
        with pytest.raises(ConfigError, match="cannot open /etc/passwd/key") as caught:
            build_server_ssl_context(tls(pki, key="/etc/passwd/key"))
        assert caught.value.keys == ("exporter.prometheus.tls.key",)

    def test_a_symlinked_ancestor_names_the_key(self, pki: Pki, tmp_path: Path) -> None:
        real = tmp_path / "real"
        real.mkdir()
        key = real / "server.key"
        key.write_bytes(Path(pki.path("server.key")).read_bytes())
        key.chmod(0o600)
        user_owned_symlink(tmp_path / "via", real)
        with pytest.raises(ConfigError) as caught:
            build_server_ssl_context(tls(pki, key=str(tmp_path / "via" / "server.key")))
        assert caught.value.keys == ("exporter.prometheus.tls.key",)
