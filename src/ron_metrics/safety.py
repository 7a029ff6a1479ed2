"""
Filesystem and TLS safety for the exposer.

- Paths: no component of a socket or TLS file path may be a symlink unless root
  owns it (``/var/run`` → ``/run`` is fine; a link an ordinary user can retarget
  is not).
- Unix sockets: the parent directory is ours and 0700 (created so if missing), no
  symlink on the path, the socket is bound under a temporary name inside that
  private directory, set to 0600 and renamed into place, so there is never a
  moment when anyone else can reach a wider-permission socket. A stale path is
  replaced only when it is a socket we own that nothing accepts on (a live
  socket of another instance is never taken over), and at shutdown we remove
  only the socket inode we created.
- TLS: certificate, key and CA files are opened without following symlinks and
  without blocking (a FIFO cannot hang start-up), checked (regular file, owned by
  us, key no wider than 0600, certificates not world-writable, at most 1 MiB) on
  the open file descriptor, read once into memory and loaded from an anonymous memory file, so
  the check and the load see the same bytes and nothing is written to disk.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

from ron_metrics._files import NotReadableError, read_outside_file
from ron_metrics.config import TlsConfig
from ron_metrics.errors import ConfigError, ConfigProblem, ExposerError

__all__ = [
    "SocketIdentity",
    "bind_unix_socket",
    "build_server_ssl_context",
    "check_private_dir",
    "read_checked",
    "remove_unix_socket",
]

# The largest certificate, key or CA bundle read (a public CA bundle is about
# 0.2 MiB).
MAX_TLS_FILE_BYTES = 1024 * 1024

# (st_dev, st_ino, st_ctime_ns) of a socket file we created: inode numbers are
# reused once a file is gone, so the change time tells two sockets apart.
SocketIdentity = tuple[int, int, int]


def _check_ancestors(path: Path, refuse: Callable[[str], Exception]) -> None:
    current = Path(path.absolute().anchor)
    for part in path.absolute().parent.parts[1:]:
        current = current / part
        try:
            info = current.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing exists from here down: nothing to retarget
        if stat.S_ISLNK(info.st_mode) and info.st_uid != 0:
            raise refuse(
                f"{current} (in the path of {path}) is a symlink not owned by root;"
                " refusing it"
            )


def check_private_dir(directory: Path, what: str = "socket directory") -> None:
    """
    Make sure ``directory`` is ours and private (0700), creating it if missing.

    Raises:
        ExposerError: If it is a symlink, not a directory, not ours or too open.
    """
    _check_ancestors(directory / "socket", ExposerError)
    try:
        info = directory.lstat()
    except NotADirectoryError as exc:
        raise ExposerError(
            f"cannot create {what} {directory}: a parent is not a directory"
        ) from exc
    except FileNotFoundError:
        try:
            # Workers starting together may race to create it: whoever made it, the
            # checks below judge what is there.
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ExposerError(
                f"cannot create {what} {directory}: {exc.strerror}"
            ) from exc
        info = directory.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise ExposerError(f"{what} {directory} is a symlink; refusing it")
    if not stat.S_ISDIR(info.st_mode):
        raise ExposerError(f"{what} {directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise ExposerError(f"{what} {directory} is not owned by this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ExposerError(
            f"{what} {directory} has mode {stat.S_IMODE(info.st_mode):o}; it must be 0700"
        )


def _clear_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise ExposerError(f"{path} is a symlink; refusing to replace it")
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.geteuid():
        raise ExposerError(
            f"{path} exists and is not a socket we own; refusing to replace it"
        )
    if _accepts(path):
        raise ExposerError(
            f"unix:{path} is in use by a running server; refusing to take it over"
        )
    path.unlink()


def _accepts(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_unix_socket(path_text: str) -> tuple[socket.socket, SocketIdentity]:
    """
    Bind a 0600 Unix socket at ``path_text`` inside a private 0700 directory.

    Returns:
        The bound socket and the identity of its file, for :func:`remove_unix_socket`.

    Raises:
        ExposerError: If the directory or an existing path is unsafe, or binding fails.
    """
    path = Path(path_text)
    check_private_dir(path.parent)
    _clear_stale(path)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temporary))
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
    except OSError as exc:
        sock.close()
        temporary.unlink(missing_ok=True)
        raise ExposerError(f"cannot bind unix:{path}: {exc.strerror}") from exc
    return sock, _identity(path.lstat())


def _identity(info: os.stat_result) -> SocketIdentity:
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def remove_unix_socket(path_text: str, identity: SocketIdentity) -> None:
    """
    Remove our socket file at shutdown — only the very inode we created.

    Another instance may have replaced a stale path since; its socket stays.
    """
    path = Path(path_text)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(info.st_mode) and _identity(info) == identity:
        path.unlink()


def read_checked(path_text: str, key: str, *, private: bool) -> bytes:
    """
    Read a certificate or key file after the checks above, naming ``key`` on failure.

    Raises:
        ConfigError: If the file is missing, a symlink (or under one not owned by
            root), not a regular file, not ours, world-writable, or — for a
            ``private`` key — readable by others.
    """
    _check_ancestors(Path(path_text), lambda why: ConfigError.single(key, why))

    def check(info: os.stat_result) -> None:
        if info.st_uid != os.geteuid():
            raise ConfigError.single(key, f"{path_text} is not owned by this user")
        mode = stat.S_IMODE(info.st_mode)
        if private and mode & 0o077:
            raise ConfigError.single(
                key,
                f"{path_text} has mode {mode:o}; a private key must be 0600 or stricter",
            )
        if mode & 0o002:
            raise ConfigError.single(
                key, f"{path_text} is world-writable (mode {mode:o}); refusing it"
            )

    try:
        return read_outside_file(
            path_text, limit=MAX_TLS_FILE_BYTES, follow_symlinks=False, check=check
        )
    except FileNotFoundError as exc:
        raise ConfigError.single(key, f"{path_text} does not exist") from exc
    except NotReadableError as exc:
        raise ConfigError.single(key, f"{path_text} {exc.why}") from exc
    except OSError as exc:
        if os.path.islink(path_text):
            raise ConfigError.single(
                key, f"{path_text} is a symlink; refusing it"
            ) from exc
        raise ConfigError.single(
            key, f"cannot open {path_text}: {exc.strerror}"
        ) from exc


def _memory_file(name: str, content: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, content)
    return fd


def check_tls_files(tls: TlsConfig, prefix: str = "exporter.prometheus.tls") -> None:
    """
    Run the file checks only (for ``check-config``), reading nothing into a context.

    Raises:
        ConfigError: Naming the file and the problem.
    """
    build_server_ssl_context(tls, prefix)


def _read_pair(tls: TlsConfig, prefix: str) -> tuple[bytes, bytes]:
    # Both files are checked before anything is refused: each one's problem is
    # reported, in one error.
    problems: list[ConfigProblem] = []
    read: list[bytes] = []
    for name, private in (("cert", False), ("key", True)):
        try:
            read.append(
                read_checked(
                    str(getattr(tls, name)), f"{prefix}.{name}", private=private
                )
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return read[0], read[1]


def build_server_ssl_context(
    tls: TlsConfig, prefix: str = "exporter.prometheus.tls"
) -> ssl.SSLContext:
    """
    A TLS >= 1.2 server context offering only ``http/1.1`` over ALPN.

    Raises:
        ConfigError: If a file is missing, a symlink, not ours, too open, or invalid.
    """
    assert_enabled = tls.cert is not None and tls.key is not None
    if not assert_enabled:
        raise ConfigError.single(prefix, "TLS needs both 'cert' and 'key'")
    cert, key = _read_pair(tls, prefix)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(["http/1.1"])
    cert_fd = _memory_file("ron-metrics-cert", cert)
    key_fd = _memory_file("ron-metrics-key", key)
    try:
        context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
    except ssl.SSLError as exc:
        raise ConfigError.single(
            prefix, f"certificate and key do not load: {exc.reason}"
        ) from exc
    finally:
        os.close(cert_fd)
        os.close(key_fd)
        del key
    if tls.client_ca is not None:
        ca = read_checked(tls.client_ca, f"{prefix}.client_ca", private=False)
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", errors="strict"))
        except (ssl.SSLError, UnicodeDecodeError) as exc:
            raise ConfigError.single(
                f"{prefix}.client_ca", "not a valid PEM CA bundle"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context
