"""
The one way ron-metrics reads a file that comes from outside (the TOML config, the
declarative YAML, group member files and the archive).

The file is opened without blocking (a FIFO or a device answers at once, and is
refused by name), optionally without following a symlink, checked to be a regular
file after it is open (so what is checked is what is read), refused when larger
than the bound for its kind, and read in bounded chunks, so memory never holds
more than the bound even if the file grows while it is read.
"""

from __future__ import annotations

import os
import stat

__all__ = ["NotReadableError", "read_outside_file"]

_CHUNK = 1 << 20


class NotReadableError(ValueError):
    """
    The file is not something ron-metrics reads: ``why`` says what it is instead.
    """

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path!r} {why}")


def read_outside_file(
    path: str | os.PathLike[str], *, limit: int, follow_symlinks: bool = True
) -> bytes:
    """
    The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises:
        FileNotFoundError, IsADirectoryError, OSError: It cannot be opened (a
            symlink with ``follow_symlinks=False``: ``ELOOP``).
        NotReadableError: It is not a regular file, or is larger than ``limit``.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    shown = os.fspath(path)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(f"{shown!r} is a directory")
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise NotReadableError(shown, f"is {kind}")
        if info.st_size > limit:
            raise NotReadableError(shown, f"is larger than {limit} bytes")
        chunks: list[bytes] = []
        left = limit + 1  # it may grow while we read: one byte more tells
        while left > 0 and (chunk := os.read(fd, min(left, _CHUNK))):
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise NotReadableError(shown, f"is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
