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
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource

from ron_metrics._files import NotReadableError, open_outside_file, read_open_file
from ron_metrics.errors import ConfigError, ExposerError
from ron_metrics.logs import RateLimitedLog, log_event
from ron_metrics.multiprocess.archive import ARCHIVE, read_archive, write_archive
from ron_metrics.multiprocess.data import GroupData
from ron_metrics.multiprocess.guard import TotalsFloor, ValueGuard
from ron_metrics.multiprocess.member_runtime import MemberRuntime, OwnCpu
from ron_metrics.multiprocess.merge import merge
from ron_metrics.multiprocess.store import (
    MAX_GROUP_FILE_BYTES,
    FileIndex,
    MemberStore,
    SeriesKey,
)
from ron_metrics.safety import check_private_dir

__all__ = ["Group"]

_log = logging.getLogger("ron_metrics.multiprocess")
# A bad file is logged at most once a second (with the count of the rest).
_UNREADABLE = RateLimitedLog(_log)
_MEMBER_GLOB = "member-*.db"
# Fold exited members into the archive once there are this many.
COMPACT_AFTER = 16

Records = list[tuple[SeriesKey, tuple[float, ...]]]

# ``rejected_total{reason}`` of what a collection leaves out: a member or archive
# file it cannot use (counted once per collection that skips it), and each value
# a member could not legitimately hold.
REJECT_FILE = "group_file"
REJECT_VALUE = "group_value"


def _pid_of(path: Path) -> int | None:
    # member-PID-NANOS.db; anything else names no process.
    parts = path.name.split("-")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 10:
        return None
    return int(parts[1])


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
        self._floor = TotalsFloor()
        # The archive as last read, and whether this collection could not read it.
        self._archive: tuple[frozenset[str], Records] = (frozenset(), [])
        self._archive_broken = False
        # Told what a collection refused: (reason, how many). Set by the runtime
        # to its ``rejected_total`` counter.
        self.on_rejected: Callable[[str, int], None] = lambda reason, count: None
        # Reads each live member's process values at collection (when the runtime
        # reports process metrics).
        self.member_runtime: MemberRuntime | None = None
        # Publishes this member's CPU time for the group's total (same condition).
        self.own_cpu: OwnCpu | None = None

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
        for path, _, live in self._member_files(report=False):
            yield path, live

    def _member_files(self, *, report: bool) -> Iterator[tuple[Path, int, bool]]:
        """
        Each member file as (path, open descriptor, live): opened once, never through
        a symlink and never blocking (a FIFO or device is skipped), so the file
        whose liveness is judged is the file that is read.
        """
        seen: set[tuple[int, int]] = set()
        for path in sorted(self.directory.glob(_MEMBER_GLOB)):
            try:
                fd = open_outside_file(path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            except (OSError, NotReadableError) as exc:
                if report:
                    self._skip(path, exc)
                continue
            try:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) in seen:
                    # A second name (hard link) of a file already read: never twice.
                    if report:
                        self._skip(path, "another name of a member file already read")
                    continue
                seen.add((info.st_dev, info.st_ino))
                if self.store is not None and str(path) == self.store.path:
                    yield path, fd, True
                else:
                    # Taking the lock means no process holds it: the member exited.
                    yield path, fd, not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
            self.publish()  # this member's last CPU time stays in the group's total
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

    def publish(self) -> None:
        """
        Write what this member publishes on its own (its CPU time) into its store.
        """
        if self.own_cpu is not None and self.store is not None:
            self.own_cpu.publish()

    # -- collection ------------------------------------------------------------

    def collect(self, resource: Resource) -> MetricsData:
        """
        The group's totals now: every member's file, live or exited, and the archive.
        """
        if self._data is None:
            self._data = GroupData(resource, time.time_ns())
        self.publish()  # the serving member's own CPU time, fresh for this scrape
        members: list[tuple[bool, Records]] = []
        self._archive_broken = False
        try:
            absorbed, archived = self._archive = read_archive(self.directory)
        except (OSError, ValueError) as exc:
            # The last archive read stands in (the files it absorbed are gone), so
            # a broken archive never takes totals backwards; it is not compacted.
            absorbed, archived = self._archive
            self._archive_broken = True
            self._skip(self.directory / ARCHIVE, exc)
        members.append((False, archived))
        exited: list[Path] = []
        seen: list[Path] = []
        live_pids: list[int] = []
        for path, fd, live in self._member_files(report=True):
            if path.name in absorbed and not live:
                continue  # folded into the archive (a live member never is)
            if live and (pid := _pid_of(path)) is not None:
                live_pids.append(pid)
            records = self._read(path, fd)
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
        merged = merge(members, gauge_policy=self._gauge_policy)
        if held := self._floor.hold(merged):
            self.on_rejected(REJECT_VALUE, held)
            _UNREADABLE.log(
                logging.WARNING,
                "group_total_held",
                series=held,
                why="a total fell or vanished (a file removed or rewritten, an archive"
                " claiming files it does not hold); the last reported total stands",
            )
        runtime = self.member_runtime
        return self._data.build(
            merged, runtime.metrics(live_pids) if runtime is not None else ()
        )

    def _read(self, path: Path, fd: int) -> Records | None:
        index = self._indexes.setdefault(path, FileIndex())
        guard = self._guards.setdefault(path, ValueGuard())
        refused = guard.refused
        try:
            data = read_open_file(fd, str(path), limit=MAX_GROUP_FILE_BYTES)
            records = guard.admit(index.read(data))
        except (OSError, ValueError) as exc:
            del self._indexes[path]
            self._skip(path, exc)
            if isinstance(exc, ValueError) and guard.has_values():
                # Broken after it was read: what it showed stands (totals never
                # go backwards); a file removed is another matter.
                return guard.last_records()
            return None
        if guard.refused > refused:
            self.on_rejected(REJECT_VALUE, guard.refused - refused)
            _UNREADABLE.log(
                logging.WARNING,
                "group_value_refused",
                path=str(path),
                refused=guard.refused - refused,
                why="a value no honest member holds (a counter going backwards,"
                " NaN, infinite or negative); its last admitted value stands",
            )
        return records

    def _skip(self, path: Path, error: Exception | str) -> None:
        """One file this collection leaves out: logged (rate-limited) and counted."""
        self.on_rejected(REJECT_FILE, 1)
        _UNREADABLE.log(
            logging.WARNING, "group_file_unreadable", path=str(path), error=str(error)
        )

    def _compact(self, exited: list[Path], absorbed: frozenset[str]) -> None:
        write_archive(self.directory, exited, absorbed, gauge_policy=self._gauge_policy)
        self._archive = read_archive(self.directory)  # what now stands for them
        for path in exited:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        log_event(_log, logging.INFO, "group_compacted", members=len(exited))
