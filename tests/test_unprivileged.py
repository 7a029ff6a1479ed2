"""
The file and socket safety checks once more as an ordinary user.

CI runs as root, and root hides ownership mistakes: every file it creates is its
own, and a check that judges "owned by root" the wrong way round passes. Here a
forked child drops to ``nobody`` (the interpreter and the package are already
loaded, so it needs no access to where Python is installed) and runs the checks
in a directory it owns, next to files root owns.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource

from ron_metrics import ConfigError, ExposerError
from ron_metrics._files import NotReadableError, read_outside_file
from ron_metrics.config import TlsConfig
from ron_metrics.multiprocess.group import Group
from ron_metrics.safety import bind_unix_socket, build_server_ssl_context
from tls_material import Pki, make_pki

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not hasattr(os, "fork"),
    reason="as a non-root user the whole suite already runs unprivileged",
)


def as_nobody(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child as uid/gid 65534; its failure fails here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            check()
            report = b""
        except BaseException:
            report = traceback.format_exc().encode()
            code = 1
        view = memoryview(report)
        while view:
            view = view[os.write(write_end, view) :]
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report.decode(errors="replace")


@pytest.fixture(name="home")
def _home() -> Iterator[Path]:
    """A directory ``nobody`` owns, under /tmp (every ancestor root's, no symlink)."""
    home = Path(tempfile.mkdtemp(prefix="ron-metrics-nobody-", dir="/tmp"))
    os.chown(home, NOBODY, NOBODY)
    try:
        yield home
    finally:
        for path in sorted(home.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        home.rmdir()


@pytest.fixture(name="pki", scope="module")
def _pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _give(path: Path, content: bytes, mode: int, owner: int = NOBODY) -> str:
    path.write_bytes(content)
    path.chmod(mode)
    os.chown(path, owner, owner)
    return str(path)


def test_own_tls_material_loads_and_roots_is_refused(pki: Pki, home: Path) -> None:
    """The user's own files load; a readable certificate root owns is refused."""
    cert_bytes = Path(pki.path("server.pem")).read_bytes()
    cert = _give(home / "cert.pem", cert_bytes, 0o644)
    key = _give(home / "key.pem", Path(pki.path("server.key")).read_bytes(), 0o600)
    roots = _give(home / "roots.pem", cert_bytes, 0o644, owner=0)

    def check() -> None:
        assert build_server_ssl_context(TlsConfig(cert=cert, key=key)) is not None
        with pytest.raises(ConfigError, match="not owned by this user"):
            build_server_ssl_context(TlsConfig(cert=roots, key=key))

    as_nobody(check)


def test_private_socket_in_a_users_own_directories(home: Path) -> None:
    """Socket dir 0700 and socket 0600 under directories the user owns; it serves."""
    path = home / "a" / "b" / "run" / "metrics.sock"

    def check() -> None:
        (home / "a" / "b").mkdir(parents=True)
        sock, _ = bind_unix_socket(str(path))
        sock.listen()
        try:
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(path.lstat().st_mode) == 0o600
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
        finally:
            sock.close()

    as_nobody(check)


def test_a_symlink_the_user_could_retarget_is_refused(home: Path) -> None:
    """A symlink the ordinary user owns above the socket directory is refused."""

    def check() -> None:
        (home / "real").mkdir()
        (home / "via").symlink_to(home / "real")
        with pytest.raises(ExposerError, match="symlink not owned by root"):
            bind_unix_socket(str(home / "via" / "run" / "metrics.sock"))

    as_nobody(check)


def test_group_files_are_private_and_hostile_ones_skipped(home: Path) -> None:
    """Member files 0600 under umask 022; a FIFO member and a FIFO config refused."""

    def check() -> None:
        os.umask(0o022)
        group = Group(str(home / "group"), gauge_policy="last")
        store = group.join()
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        os.mkfifo(home / "group" / "member-0-0.db", 0o600)
        group.collect(Resource({}))  # returns: the FIFO is skipped, not waited on
        os.mkfifo(home / "config.toml", 0o600)
        with pytest.raises(NotReadableError, match="is a FIFO"):
            read_outside_file(home / "config.toml", limit=1024)
        group.leave()

    as_nobody(check)


def test_group_members_of_another_user_are_never_read() -> None:
    """A member pid names a process: read only if it is this user's own."""
    from ron_metrics._runtime_readings import member_reading

    root_process = os.getpid()  # this test process runs as root

    def check() -> None:
        own = member_reading(os.getpid())
        assert own is not None and own.pid == os.getpid()
        assert member_reading(root_process) is None
        assert member_reading(1) is None

    as_nobody(check)
