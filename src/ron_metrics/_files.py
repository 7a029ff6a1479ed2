"""
The one way ron-metrics reads a file that comes from outside (the TOML config, the
declarative YAML, TLS certificates and keys, group member files and the archive).

The file is opened without blocking (a FIFO or a device answers at once, and is
refused by name), optionally without following a symlink, checked to be a regular
file after it is open (so what is checked is what is read), refused when larger
than the bound for its kind, and read in bounded chunks, so memory never holds
more than the bound even if the file grows while it is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

__all__ = [
    "NotReadableError",
    "open_outside_file",
    "read_open_file",
    "read_outside_file",
]

_CHUNK = 1 << 20


class NotReadableError(ValueError):
    """
    The file is not something ron-metrics reads: ``why`` says what it is instead.
    """

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path!r} {why}")


def open_outside_file(path: str | os.PathLike[str], *, follow_symlinks: bool) -> int:
    """
    A descriptor of the regular file at ``path``, opened without blocking.

    Raises:
        FileNotFoundError, IsADirectoryError, OSError: It cannot be opened (a
            symlink with ``follow_symlinks=False``: ``ELOOP``).
        NotReadableError: It is not a regular file.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    shown = os.fspath(path)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{shown!r} is a directory")
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise NotReadableError(shown, f"is {kind}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_open_file(
    fd: int,
    shown: str,
    *,
    limit: int,
    check: Callable[[os.stat_result], None] | None = None,
) -> bytes:
    """
    At most ``limit`` bytes of the open regular file ``fd`` (named ``shown`` in
    errors), from its start; ``check`` first judges its status (owner, mode).

    Raises:
        NotReadableError: It is larger than ``limit``, or grows past it meanwhile.
    """
    info = os.fstat(fd)
    if check is not None:
        check(info)
    if info.st_size > limit:
        raise NotReadableError(shown, f"is larger than {limit} bytes")
    chunks: list[bytes] = []
    offset = 0
    left = limit + 1  # it may grow while we read: one byte more tells
    while left > 0 and (chunk := os.pread(fd, min(left, _CHUNK), offset)):
        chunks.append(chunk)
        offset += len(chunk)
        left -= len(chunk)
    if left <= 0:
        raise NotReadableError(shown, f"is larger than {limit} bytes")
    return b"".join(chunks)


def read_outside_file(
    path: str | os.PathLike[str],
    *,
    limit: int,
    follow_symlinks: bool = True,
    check: Callable[[os.stat_result], None] | None = None,
) -> bytes:
    """
    The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises:
        FileNotFoundError, IsADirectoryError, OSError: It cannot be opened (a
            symlink with ``follow_symlinks=False``: ``ELOOP``).
        NotReadableError: It is not a regular file, or is larger than ``limit``.
    """
    fd = open_outside_file(path, follow_symlinks=follow_symlinks)
    try:
        return read_open_file(fd, os.fspath(path), limit=limit, check=check)
    finally:
        os.close(fd)
