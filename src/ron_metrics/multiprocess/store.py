"""
One process's measurements in a memory-mapped file, written through on every update.

Each series is a record: its identity (a JSON key: scope, name, kind, unit,
description, bucket bounds, attributes) and a few float64 values. A store only
appends records and updates values in place, so another process can read the file
at any moment: the header's ``used`` field is written after a record is complete,
and readers parse only that far. Every completed update is in the page cache the
moment it returns, so it survives even a SIGKILL of the process.

Layout::

    header   8 bytes magic, 8 bytes used (uint64, little-endian)
    record   4 bytes key length, 4 bytes value count, key (UTF-8, padded to 8),
             value count float64s
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from typing import Any

from ron_metrics._files import read_outside_file

__all__ = [
    "MAGIC",
    "FileIndex",
    "MemberStore",
    "SeriesKey",
    "parse_records",
    "parsed_key",
    "read_file",
    "series_key",
]

MAGIC = b"RONMP001"
_HEADER = struct.Struct("<8sQ")
_RECORD = struct.Struct("<II")
_VALUE = struct.Struct("<d")
_INITIAL_SIZE = 64 * 1024

SeriesKey = str
"""A series' identity as canonical JSON (stable across processes)."""


def series_key(
    *,
    scope: tuple[str, str],
    name: str,
    kind: str,
    unit: str,
    description: str,
    bounds: Sequence[float] | None,
    attributes: dict[str, Any],
) -> SeriesKey:
    """
    The canonical key of one series (attribute order does not matter).
    """
    return json.dumps(
        [
            scope[0],
            scope[1],
            name,
            kind,
            unit,
            description,
            list(bounds) if bounds is not None else None,
            sorted(attributes.items()),
        ],
        separators=(",", ":"),
        default=str,
    )


@functools.lru_cache(maxsize=1_000_000)
def parsed_key(key: SeriesKey) -> tuple[Any, ...]:
    """
    A key's fields (remembered: every scrape of a group reads the same keys).
    """
    return tuple(json.loads(key))


# The largest group file read (a member's store or the archive): far above what
# any real group writes (a million series of a few values is some tens of MiB).
MAX_GROUP_FILE_BYTES = 256 * 1024 * 1024


def read_file(path: str | os.PathLike[str]) -> bytes:
    """
    A group file's bytes: never through a symlink, never blocking on a FIFO or a
    device, never more than :data:`MAX_GROUP_FILE_BYTES` held in memory.

    Raises:
        OSError: If it cannot be opened (a symlink: ``ELOOP``).
        ValueError: If it is not a regular file or is larger than the bound.
    """
    return read_outside_file(path, limit=MAX_GROUP_FILE_BYTES, follow_symlinks=False)


def _padded(length: int) -> int:
    return (length + 7) & ~7


class MemberStore:
    """
    The write side: one file per process, created exclusively (0600).

    Updates are serialised by one lock per store; the file grows by doubling.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(path, flags, 0o600)
        os.ftruncate(self.fd, _INITIAL_SIZE)
        self._map = mmap.mmap(self.fd, _INITIAL_SIZE)
        self._used = _HEADER.size
        _HEADER.pack_into(self._map, 0, MAGIC, self._used)
        self._offsets: dict[SeriesKey, int] = {}
        self._lock = threading.Lock()
        # Exponential histograms' writers, by key (they move their records).
        self.writers: dict[SeriesKey, Any] = {}

    def slot(self, key: SeriesKey, count: int, initial: Sequence[float] = ()) -> int:
        """
        The offset of ``key``'s values, appending the record on first use.
        """
        with self._lock:
            offset = self._offsets.get(key)
            if offset is None:
                offset = self._append(key, count, initial)
            return offset

    def _append(self, key: SeriesKey, count: int, initial: Sequence[float]) -> int:
        encoded = key.encode()
        size = _RECORD.size + _padded(len(encoded)) + 8 * count
        self._reserve(self._used + size)
        start = self._used
        _RECORD.pack_into(self._map, start, len(encoded), count)
        self._map[start + _RECORD.size : start + _RECORD.size + len(encoded)] = encoded
        offset = start + _RECORD.size + _padded(len(encoded))
        values = list(initial) + [0.0] * (count - len(initial))
        struct.pack_into(f"<{count}d", self._map, offset, *values)
        # Published last: a reader never sees a half-written record.
        self._used = start + size
        _HEADER.pack_into(self._map, 0, MAGIC, self._used)
        self._offsets[key] = offset
        return offset

    def _reserve(self, needed: int) -> None:
        size = len(self._map)
        if needed <= size:
            return
        while size < needed:
            size *= 2
        os.ftruncate(self.fd, size)
        self._map.close()
        self._map = mmap.mmap(self.fd, size)

    def add(self, offset: int, value: float) -> None:
        """
        Add ``value`` to the float at ``offset``.
        """
        with self._lock:
            (current,) = _VALUE.unpack_from(self._map, offset)
            _VALUE.pack_into(self._map, offset, current + value)

    def set(self, offset: int, *values: float) -> None:
        """
        Overwrite the floats at ``offset`` with ``values``.
        """
        with self._lock:
            struct.pack_into(f"<{len(values)}d", self._map, offset, *values)

    def observe(self, offset: int, bucket: int, value: float) -> None:
        """
        Record one histogram measurement: ``[sum, min, max, buckets...]`` at ``offset``.
        """
        with self._lock:
            total, low, high = struct.unpack_from("<3d", self._map, offset)
            struct.pack_into(
                "<3d",
                self._map,
                offset,
                total + value,
                min(low, value),
                max(high, value),
            )
            at = offset + 8 * (3 + bucket)
            (count,) = _VALUE.unpack_from(self._map, at)
            _VALUE.pack_into(self._map, at, count + 1)

    def version(self, key: SeriesKey, values: Sequence[float]) -> int:
        """
        Append ``key``'s record again with ``values``: readers take the last
        record of a key, so they see the old values or these, never a mix.
        """
        with self._lock:
            return self._append(key, len(values), values)

    def values(self, offset: int, count: int) -> tuple[float, ...]:
        """The ``count`` floats at ``offset``."""
        with self._lock:
            return struct.unpack_from(f"<{count}d", self._map, offset)

    def observe_exponential(self, offset: int, slot: int, value: float) -> None:
        """
        Record one exponential-histogram measurement at ``offset`` (see
        :mod:`ron_metrics.multiprocess.exponential_record`): ``slot`` is the bucket
        in the window, -1 the zero bucket.
        """
        with self._lock:
            count, total, low, high, zeros = struct.unpack_from(
                "<5d", self._map, offset
            )
            struct.pack_into(
                "<5d",
                self._map,
                offset,
                count + 1,
                total + value,
                min(low, value),
                max(high, value),
                zeros + (slot < 0),
            )
            if slot >= 0:
                at = offset + 8 * (7 + slot)
                (bucket,) = _VALUE.unpack_from(self._map, at)
                _VALUE.pack_into(self._map, at, bucket + 1)

    def close(self) -> None:
        """
        Unmap and close (the file stays: its totals outlive the process).
        """
        with self._lock:
            self._map.close()
            os.close(self.fd)


def parse_records(data: bytes) -> list[tuple[SeriesKey, tuple[float, ...]]]:
    """
    Every complete record of a store file's bytes (once; see :class:`FileIndex`).

    Raises:
        ValueError: If the file is not a store file.
    """
    return FileIndex().read(data)


class FileIndex:
    """
    Where each record of one store file sits, learnt once: a scrape then only
    decodes the records appended since the last one and unpacks every value.
    """

    def __init__(self) -> None:
        self._records: dict[SeriesKey, tuple[int, struct.Struct]]
        self._forget()

    def _forget(self) -> None:
        self._parsed_to = _HEADER.size
        self._records = {}

    def read(self, data: bytes) -> list[tuple[SeriesKey, tuple[float, ...]]]:
        """
        Every complete record of ``data`` (the file's current bytes).

        Raises:
            ValueError: If the file is not a store file.
        """
        if len(data) < _HEADER.size:
            raise ValueError("too short for a store file")
        magic, used = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValueError("not a ron-metrics store file")
        end = min(used, len(data))
        if end < self._parsed_to:
            # Rewritten shorter since the last read: a store only grows.
            self._forget()  # learn the file again next time
            raise ValueError("the file shrank since it was last read")
        try:
            return self._read_from(data, end)
        except (struct.error, UnicodeDecodeError) as exc:
            self._forget()  # learn the file again next time
            raise ValueError(f"malformed record: {exc}") from exc

    def _read_from(
        self, data: bytes, end: int
    ) -> list[tuple[SeriesKey, tuple[float, ...]]]:
        at = self._parsed_to
        while at + _RECORD.size <= end:
            key_length, count = _RECORD.unpack_from(data, at)
            key_at = at + _RECORD.size
            values_at = key_at + _padded(key_length)
            after = values_at + 8 * count
            if after > end:
                break
            key = data[key_at : key_at + key_length].decode()
            # A key written again (a moved exponential window): the last wins.
            self._records[key] = (values_at, struct.Struct(f"<{count}d"))
            at = after
        self._parsed_to = at
        return [
            (key, layout.unpack_from(data, o))
            for key, (o, layout) in self._records.items()
        ]
