"""
Files and sockets the exposer touches: no hang, no takeover, no retargetable path.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from ron_metrics import ConfigError, ExposerError
from ron_metrics.config import TlsConfig
from ron_metrics.safety import (
    bind_unix_socket,
    build_server_ssl_context,
    remove_unix_socket,
)
from tls_material import Pki, make_pki


@pytest.fixture(name="pki", scope="module")
def _pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def user_owned_symlink(link: Path, target: Path) -> None:
    """A symlink an ordinary user could retarget (as root: hand it to 'nobody')."""
    link.symlink_to(target)
    if os.geteuid() == 0:
        os.lchown(link, 65534, 65534)


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
        assert "not a regular file" in str(result[0])

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

    def test_symlinked_ancestor_of_the_key_is_refused(
        self, pki: Pki, tmp_path: Path
    ) -> None:
        """A user-owned symlink anywhere above the key file is refused."""
        real = tmp_path / "real"
        real.mkdir()
        key = real / "server.key"
        key.write_bytes(Path(pki.path("server.key")).read_bytes())
        key.chmod(0o600)
        user_owned_symlink(tmp_path / "via", real)
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
