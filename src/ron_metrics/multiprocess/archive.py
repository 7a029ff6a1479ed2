"""
``archive.db``: the totals of exited members, folded together.

Written to a temporary file and renamed into place, so a reader sees the old
archive or the new one, never half of one. It lists the member files it absorbed;
readers skip those files even if removing them failed, so nothing is counted twice.
Only totals that outlive a process are kept (counters and histograms).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ron_metrics.multiprocess.merge import CUMULATIVE_KINDS, merge
from ron_metrics.multiprocess.store import SeriesKey, parse_records, read_file

__all__ = ["ARCHIVE", "read_archive", "write_archive"]

ARCHIVE = "archive.db"

Records = list[tuple[SeriesKey, tuple[float, ...]]]


def read_archive(directory: Path) -> tuple[frozenset[str], Records]:
    """
    The absorbed file names and the archived records (empty when there is none).
    """
    try:
        raw = json.loads(read_file(directory / ARCHIVE))
    except FileNotFoundError:
        return frozenset(), []
    try:
        absorbed = frozenset(str(name) for name in raw["absorbed"])
        records = [
            (str(key), tuple(float(v) for v in values))
            for key, values in raw["records"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a ron-metrics archive: {exc!r}") from exc
    return absorbed, records


def write_archive(
    directory: Path,
    exited: Iterable[Path],
    absorbed: frozenset[str],
    *,
    gauge_policy: str,
) -> None:
    """
    Fold ``exited`` member files into the archive (atomically).
    """
    _, archived = read_archive(directory)
    members: list[tuple[bool, Records]] = [(False, archived)]
    names = {name for name in absorbed if (directory / name).exists()}
    for path in exited:
        with contextlib.suppress(OSError, ValueError):
            members.append((False, list(parse_records(read_file(path)))))
            names.add(path.name)
    merged = merge(members, gauge_policy=gauge_policy)
    payload = {
        "absorbed": sorted(names),
        "records": [
            [key, value.values]
            for key, value in merged.items()
            if value.kind in CUMULATIVE_KINDS
        ],
    }
    temporary = directory / f".{ARCHIVE}.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    # A file left there before (a crashed write) keeps its old mode through
    # O_CREAT: the archive is private whatever was there.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, directory / ARCHIVE)
