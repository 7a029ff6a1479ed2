"""
The one reader of files from outside: no blocking open, no symlink where refused,
a regular file checked after open, a size bound, bytes returned exactly.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from ron_metrics._files import (
    NotReadableError,
    open_outside_file,
    read_open_file,
    read_outside_file,
)


def test_a_file_of_many_chunks_comes_back_byte_for_byte(tmp_path: Path) -> None:
    """Read in bounded chunks, joined with nothing in between."""
    content = os.urandom(2 * 2**20 + 12345)
    path = tmp_path / "big"
    path.write_bytes(content)
    assert read_outside_file(path, limit=len(content)) == content


def test_the_bound_is_inclusive(tmp_path: Path) -> None:
    """A file of exactly the bound is read; one byte more is refused by size."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_outside_file(path, limit=100) == b"x" * 100
    with pytest.raises(NotReadableError, match="larger than 99 bytes") as caught:
        read_outside_file(path, limit=99)
    assert (caught.value.path, caught.value.why) == (
        str(path),
        "is larger than 99 bytes",
    )
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("size", [100, 2 * 2**20], ids=["one-chunk", "chunks"])
def test_a_file_growing_past_the_bound_while_read_is_refused(
    tmp_path: Path, size: int
) -> None:
    """The size is judged before reading; a file that grows meanwhile is caught by
    reading one byte past the bound, never by reading it all."""
    path = tmp_path / "grows"
    path.write_bytes(b"x" * size)

    def grow(_: os.stat_result) -> None:
        with path.open("ab") as handle:
            handle.write(b"y")  # one byte past the bound is enough to tell

    with pytest.raises(NotReadableError, match=f"larger than {size} bytes") as caught:
        read_outside_file(path, limit=size, check=grow)
    assert caught.value.path == str(path)
    assert read_outside_file(path, limit=size + 1) == b"x" * size + b"y"


def test_a_fifo_is_refused_at_once_by_name(tmp_path: Path) -> None:
    """Opening a FIFO without a writer returns at once; it is named as a FIFO."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo, 0o600)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            read_outside_file(fifo, limit=10)
        except BaseException as exc:  # the test inspects whatever was raised
            raised.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "opening a FIFO blocked"
    assert isinstance(raised[0], NotReadableError)
    assert (raised[0].path, raised[0].why) == (str(fifo), "is a FIFO")


def test_no_symlink_following_still_never_blocks(tmp_path: Path) -> None:
    """Refusing symlinks keeps the other flags: a FIFO still answers at once."""
    fifo = tmp_path / "member.db"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    with pytest.raises(NotReadableError, match="is a FIFO"):
        read_outside_file(fifo, limit=10, follow_symlinks=False)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("follow", [True, False])
def test_descriptors_are_not_inherited(tmp_path: Path, follow: bool) -> None:
    """A descriptor opened here never leaks into a child process (close-on-exec)."""
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = open_outside_file(path, follow_symlinks=follow)
    try:
        assert not os.get_inheritable(fd)
        assert read_open_file(fd, str(path), limit=10) == b"data"
    finally:
        os.close(fd)


def test_a_device_and_a_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotReadableError, match="not a regular file"):
        read_outside_file("/dev/zero", limit=10)
    with pytest.raises(IsADirectoryError, match="is a directory") as caught:
        read_outside_file(tmp_path, limit=10)
    assert str(tmp_path) in str(caught.value)


def test_symlinks_are_followed_only_when_allowed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_outside_file(link, limit=10) == b"data"
    with pytest.raises(OSError, match="Too many levels of symbolic links") as caught:
        read_outside_file(link, limit=10, follow_symlinks=False)
    assert caught.value.errno == errno.ELOOP


def test_the_check_judges_the_open_file_before_anything_is_read(
    tmp_path: Path,
) -> None:
    """The status the check sees is the open file's; a refusal reads nothing."""
    path = tmp_path / "key"
    path.write_bytes(b"secret")
    path.chmod(0o640)
    seen: list[int] = []

    def refuse(info: os.stat_result) -> None:
        seen.append(info.st_mode & 0o777)
        raise PermissionError("too open")

    with pytest.raises(PermissionError, match="too open"):
        read_outside_file(path, limit=100, check=refuse)
    assert seen == [0o640]
