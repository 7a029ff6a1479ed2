"""
Amnesia and the group directory: ``service.amnesia = true`` promises that nothing is
persisted, so a ``[multiprocess]`` directory must sit on a memory filesystem.

The filesystem is judged from the directory's device, matched against the kernel's
mount table (``/proc/self/mountinfo``) — never from the path's name, which proves
nothing (``/dev/shm`` can be a bind mount of a disk, ``/data/x`` can be a tmpfs).
"""

from __future__ import annotations

import os
from pathlib import Path

from ron_metrics.errors import ConfigError

__all__ = ["MEMORY_FILESYSTEMS", "check_amnesia_dir", "filesystem_type"]

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def filesystem_type(path: str | os.PathLike[str]) -> str | None:
    """
    The type of the filesystem holding ``path`` (its nearest existing ancestor), or
    ``None`` when the mount table does not say.
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    device = os.stat(probe).st_dev
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        table = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == wanted and "-" in fields:
            return fields[fields.index("-") + 1]
    return None


def check_amnesia_dir(directory: str, *, amnesia: bool) -> None:
    """
    Raises:
        ConfigError: ``amnesia`` is on and ``directory`` is not on tmpfs or ramfs.
    """
    if not amnesia:
        return
    found = filesystem_type(directory)
    if found not in MEMORY_FILESYSTEMS:
        raise ConfigError.single(
            "multiprocess.dir",
            f"service.amnesia = true promises nothing is persisted, but this"
            f" directory is on {found or 'an unknown filesystem'}, not a memory"
            " filesystem (tmpfs or ramfs); put it on one (e.g. under /dev/shm or"
            " /run) or turn amnesia off",
        )
