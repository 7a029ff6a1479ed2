"""
``service.amnesia = true`` means nothing is persisted: a ``[multiprocess]``
directory must be on a memory filesystem (judged from the filesystem, not the
path), and the group's files go when its last member leaves.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import clean_env
from ron_metrics import Config, ConfigError, start
from ron_metrics.multiprocess.memory_fs import MEMORY_FILESYSTEMS, filesystem_type
from ron_metrics.testing import config_for_tests

BIN = Path(sys.executable).parent


def _memory_dir() -> Path | None:
    for candidate in ("/dev/shm", "/run", tempfile.gettempdir()):
        path = Path(candidate)
        if path.is_dir() and filesystem_type(path) in MEMORY_FILESYSTEMS:
            return path
    return None


@pytest.fixture
def memory_dir() -> Iterator[Path]:
    base = _memory_dir()
    if base is None:
        pytest.skip("no tmpfs/ramfs mount on this machine")
    directory = base / f"ron-metrics-test-{uuid.uuid4().hex}"
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _config(directory: Path, *, amnesia: bool) -> Config:
    return config_for_tests(
        service={"name": "forgetful", "amnesia": amnesia},
        multiprocess={"dir": str(directory)},
    )


def test_amnesia_refuses_a_group_directory_on_disk(tmp_path: Path) -> None:
    """On a disk filesystem the config is refused, naming both keys."""
    if filesystem_type(tmp_path) in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is itself a memory filesystem")
    with pytest.raises(ConfigError) as caught:
        start(_config(tmp_path / "group", amnesia=True), set_global=False)
    assert caught.value.keys == ("multiprocess.dir",)
    assert "service.amnesia" in str(caught.value)


def test_the_path_name_proves_nothing(tmp_path: Path) -> None:
    """A disk directory named like /dev/shm is still a disk."""
    disguised = tmp_path / "dev" / "shm" / "group"
    if filesystem_type(tmp_path) in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is itself a memory filesystem")
    assert filesystem_type(disguised) not in MEMORY_FILESYSTEMS


def test_check_config_refuses_it_too(tmp_path: Path) -> None:
    """ron-metrics check-config exits 2 with the same problem."""
    if filesystem_type(tmp_path) in MEMORY_FILESYSTEMS:
        pytest.skip("the temporary directory is itself a memory filesystem")
    config = tmp_path / "ron-metrics.toml"
    config.write_text(
        '[service]\nname = "s"\namnesia = true\n'
        f'[multiprocess]\ndir = "{tmp_path / "group"}"\n'
    )
    result = subprocess.run(
        [str(BIN / "ron-metrics"), "check-config", str(config)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2
    assert "multiprocess.dir" in result.stderr and "service.amnesia" in result.stderr


def test_on_tmpfs_the_group_forgets_when_its_last_member_leaves(
    memory_dir: Path,
) -> None:
    """Files exist while a member lives; none are left after the last one leaves."""
    runtime = start(_config(memory_dir, amnesia=True), set_global=False)
    try:
        runtime.get_meter("m").create_counter("jobs").add(1)
        assert list(memory_dir.glob("member-*.db"))
    finally:
        runtime.shutdown()
    assert not list(memory_dir.glob("member-*.db"))
    assert not (memory_dir / "archive.db").exists()


def test_without_amnesia_the_files_stay(memory_dir: Path) -> None:
    """The default keeps exited members' files (their totals)."""
    runtime = start(_config(memory_dir, amnesia=False), set_global=False)
    runtime.get_meter("m").create_counter("jobs").add(1)
    runtime.shutdown()
    assert list(memory_dir.glob("member-*.db"))
