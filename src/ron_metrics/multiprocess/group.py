"""
A group of processes sharing one directory: membership, liveness, the serving lease.

- **Membership.** Each process writes its own store file ``member-PID-NANOS.db`` and
  holds a shared ``flock`` on it while it lives; the kernel drops the lock when the
  process exits, however it exits. A file whose lock can be taken exclusively
  belongs to a process that is gone.
- **A new run.** The first process to join while no member is alive starts a new
  run: files of the previous run are removed (their totals belonged to it).
  Joining is serialised by ``group.lock``.
- **Serving.** Whoever holds ``serve.lock`` exclusively serves the Prometheus
  port; the others try to take it ten times a second, so when the serving
  process exits another one serves within a few tenths of a second.
- **Compaction.** Totals of exited members are folded into ``archive.db`` (which
  names the files it absorbed, so a file is never counted twice even if removing it
  failed), keeping the number of files bounded under worker churn.

The directory must be private: ours, mode 0700, no symlink anywhere on its path.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource

from ron_metrics.errors import ConfigError, ExposerError
from ron_metrics.logs import RateLimitedLog, log_event
from ron_metrics.multiprocess.archive import ARCHIVE, read_archive, write_archive
from ron_metrics.multiprocess.data import GroupData
from ron_metrics.multiprocess.guard import ValueGuard
from ron_metrics.multiprocess.merge import merge
from ron_metrics.multiprocess.store import FileIndex, MemberStore, SeriesKey, read_file
from ron_metrics.safety import check_private_dir

__all__ = ["Group"]

_log = logging.getLogger("ron_metrics.multiprocess")
# A bad file is logged at most once a second (with the count of the rest).
_UNREADABLE = RateLimitedLog(_log)
_MEMBER_GLOB = "member-*.db"
# Fold exited members into the archive once there are this many.
COMPACT_AFTER = 16

Records = list[tuple[SeriesKey, tuple[float, ...]]]


def _flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        return False
    return True


def _open_lock(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


class Group:
    """
    This process's membership of the group in ``directory``.
    """

    def __init__(
        self, directory: str, *, gauge_policy: str, forget_at_end: bool = False
    ) -> None:
        self.directory = Path(directory)
        self._gauge_policy = gauge_policy
        # Amnesia: the last member to leave removes the group's files.
        self._forget_at_end = forget_at_end
        self._serve_fd: int | None = None
        self.store: MemberStore | None = None
        self._data: GroupData | None = None
        self._indexes: dict[Path, FileIndex] = {}
        self._guards: dict[Path, ValueGuard] = {}
        # The archive as last read, and whether this collection could not read it.
        self._archive: tuple[frozenset[str], Records] = (frozenset(), [])
        self._archive_broken = False

    def join(self) -> MemberStore:
        """
        Create this process's store (a new run when no member is alive).

        Raises:
            ConfigError: If the directory is unsafe or cannot be used.
        """
        try:
            check_private_dir(self.directory, "multiprocess directory")
        except ExposerError as exc:
            raise ConfigError.single("multiprocess.dir", str(exc)) from exc
        lock = _open_lock(self.directory / "group.lock")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not any(live for _, live in self._members()):
                self._clear_previous_run()
            name = f"member-{os.getpid()}-{time.time_ns()}.db"
            store = MemberStore(str(self.directory / name))
            fcntl.flock(store.fd, fcntl.LOCK_SH)
        finally:
            os.close(lock)
        self.store = store
        return store

    def _clear_previous_run(self) -> None:
        for path in [*self.directory.glob(_MEMBER_GLOB), self.directory / ARCHIVE]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _members(self) -> Iterator[tuple[Path, bool]]:
        for path in sorted(self.directory.glob(_MEMBER_GLOB)):
            if self.store is not None and str(path) == self.store.path:
                yield path, True
                continue
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            try:
                fd = os.open(path, flags)  # a FIFO or device must not block us
            except OSError:
                continue  # removed meanwhile, or a symlink
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue  # not a store file: never read, never waited on
                # Taking the lock means no process holds it: the member exited.
                yield path, not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)

    # -- serving -------------------------------------------------------------

    def try_lead(self) -> bool:
        """
        Take the serving lease if free; True while this process holds it.
        """
        if self._serve_fd is not None:
            return True
        fd = _open_lock(self.directory / "serve.lock")
        if _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
            self._serve_fd = fd
            return True
        os.close(fd)
        return False

    def step_down(self) -> None:
        """
        Give the serving lease up (another member takes it within a poll).
        """
        if self._serve_fd is not None:
            os.close(self._serve_fd)
            self._serve_fd = None

    def leave(self) -> None:
        """
        Give up the lease and close the store; the file stays for its totals —
        unless the group forgets at its end (amnesia) and this was its last member.
        """
        self.step_down()
        if self.store is not None:
            self.store.close()  # closing the descriptor drops the liveness lock
            self.store = None
        if self._forget_at_end:
            lock = _open_lock(self.directory / "group.lock")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not any(live for _, live in self._members()):
                    self._clear_previous_run()
            finally:
                os.close(lock)

    def forget_inherited(self) -> None:
        """
        In a forked child: drop the parent's lease and store without touching them.
        """
        if self._serve_fd is not None:
            os.close(self._serve_fd)  # the parent's lock lives on in the parent
            self._serve_fd = None
        self.store = None
        self._data = None

    # -- collection ------------------------------------------------------------

    def collect(self, resource: Resource) -> MetricsData:
        """
        The group's totals now: every member's file, live or exited, and the archive.
        """
        if self._data is None:
            self._data = GroupData(resource, time.time_ns())
        members: list[tuple[bool, Records]] = []
        self._archive_broken = False
        try:
            absorbed, archived = self._archive = read_archive(self.directory)
        except (OSError, ValueError) as exc:
            # The last archive read stands in (the files it absorbed are gone), so
            # a broken archive never takes totals backwards; it is not compacted.
            absorbed, archived = self._archive
            self._archive_broken = True
            _UNREADABLE.log(
                logging.WARNING,
                "group_file_unreadable",
                path=str(self.directory / ARCHIVE),
                error=str(exc),
            )
        members.append((False, archived))
        exited: list[Path] = []
        seen: list[Path] = []
        for path, live in self._members():
            if path.name in absorbed:
                continue
            records = self._read(path)
            if records is None:
                continue
            seen.append(path)
            members.append((live, records))
            if not live:
                exited.append(path)
        if len(exited) >= COMPACT_AFTER and not self._archive_broken:
            self._compact(exited, absorbed)
        self._indexes = {p: self._indexes[p] for p in seen if p in self._indexes}
        self._guards = {path: self._guards[path] for path in seen}
        return self._data.build(merge(members, gauge_policy=self._gauge_policy))

    def _read(self, path: Path) -> Records | None:
        index = self._indexes.setdefault(path, FileIndex())
        guard = self._guards.setdefault(path, ValueGuard())
        refused = guard.refused
        try:
            records = guard.admit(index.read(read_file(path)))
        except (OSError, ValueError) as exc:
            del self._indexes[path]
            _UNREADABLE.log(
                logging.WARNING,
                "group_file_unreadable",
                path=str(path),
                error=str(exc),
            )
            if isinstance(exc, ValueError) and guard.has_values():
                # Broken after it was read: what it showed stands (totals never
                # go backwards); a file removed is another matter.
                return guard.last_records()
            return None
        if guard.refused > refused:
            _UNREADABLE.log(
                logging.WARNING,
                "group_value_refused",
                path=str(path),
                refused=guard.refused - refused,
                why="a value no honest member holds (a counter going backwards,"
                " NaN, infinite or negative); its last admitted value stands",
            )
        return records

    def _compact(self, exited: list[Path], absorbed: frozenset[str]) -> None:
        write_archive(self.directory, exited, absorbed, gauge_policy=self._gauge_policy)
        self._archive = read_archive(self.directory)  # what now stands for them
        for path in exited:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log_event(_log, logging.INFO, "group_compacted", members=len(exited))
