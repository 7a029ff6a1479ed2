"""
The multi-process group's parts, each against real files and real processes:
the store format, the merge rules per kind, membership and liveness through
``flock``, a new run clearing the previous one, compaction, directory safety, and
``fork()`` children joining the group.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource

from conftest import forking_group, get_when_served
from ron_metrics import ConfigError
from ron_metrics.multiprocess import group as group_module
from ron_metrics.multiprocess.group import Group
from ron_metrics.multiprocess.merge import merge
from ron_metrics.multiprocess.store import MemberStore, parse_records, series_key
from ron_metrics.testing import reserved_port


def _key(kind: str, name: str = "m", **attributes: str) -> str:
    bounds = (1.0, 5.0) if kind == "histogram" else None
    return series_key(
        scope=("app", ""),
        name=name,
        kind=kind,
        unit="",
        description="",
        bounds=bounds,
        attributes=dict(attributes),
    )


class TestStore:
    def test_records_round_trip_and_grow(self, tmp_path: Path) -> None:
        """Thousands of series force the file to grow; every record reads back."""
        store = MemberStore(str(tmp_path / "member-1-1.db"))
        offsets = {}
        for index in range(3000):
            key = _key("counter", k=str(index))
            offsets[key] = store.slot(key, 1)
            store.add(offsets[key], index)
        store.add(offsets[_key("counter", k="7")], 0.5)
        records = dict(parse_records((tmp_path / "member-1-1.db").read_bytes()))
        assert len(records) == 3000
        assert records[_key("counter", k="7")] == (7.5,)
        assert store.slot(_key("counter", k="7"), 1) == offsets[_key("counter", k="7")]
        store.close()

    def test_histogram_layout(self, tmp_path: Path) -> None:
        """[sum, min, max, buckets...]: each observation lands in its bucket."""
        store = MemberStore(str(tmp_path / "member-1-2.db"))
        offset = store.slot(_key("histogram"), 6, (0.0, math.inf, -math.inf))
        for bucket, value in [(0, 0.5), (1, 3.0), (2, 9.0), (1, 2.0)]:
            store.observe(offset, bucket, value)
        ((_, values),) = parse_records((tmp_path / "member-1-2.db").read_bytes())
        assert values == (14.5, 0.5, 9.0, 1.0, 2.0, 1.0)
        store.close()

    def test_a_foreign_file_is_refused(self) -> None:
        """Bytes that are not a store file raise instead of being misread."""
        with pytest.raises(ValueError, match="not a ron-metrics store"):
            list(parse_records(b"x" * 64))

    def test_series_keys_are_compact_canonical_json(self) -> None:
        """One spelling per series: compact, attributes sorted, odd values as text."""
        key = series_key(
            scope=("lib", "1.0"),
            name="n",
            kind="histogram",
            unit="s",
            description="d",
            bounds=(1.0, 5.0),
            attributes={"b": b"raw", "a": 1},
        )
        assert (
            key
            == '["lib","1.0","n","histogram","s","d",[1.0,5.0],[["a",1],["b","b\'raw\'"]]]'
        )

    def test_records_are_padded_to_eight_bytes(self) -> None:
        from ron_metrics.multiprocess.store import _padded

        assert [_padded(n) for n in (0, 1, 7, 8, 9, 15, 16, 17)] == [
            0,
            8,
            8,
            8,
            16,
            16,
            16,
            24,
        ]

    def test_set_overwrites_values(self, tmp_path: Path) -> None:
        store = MemberStore(str(tmp_path / "member-1-4.db"))
        offset = store.slot(_key("gauge"), 2)
        store.set(offset, 1.5, 2.0)
        store.set(offset, -3.0, 4.0)
        assert parse_records((tmp_path / "member-1-4.db").read_bytes()) == [
            (_key("gauge"), (-3.0, 4.0))
        ]
        store.close()

    def test_the_file_grows_by_doubling_and_is_not_inherited(
        self, tmp_path: Path
    ) -> None:
        """64 KiB to start, doubled as records need it; the descriptor is close-on-exec."""
        path = tmp_path / "member-1-5.db"
        store = MemberStore(str(path))
        assert not os.get_inheritable(store.fd)
        assert path.stat().st_size == 64 * 1024
        index = 0
        while path.stat().st_size == 64 * 1024:
            store.slot(_key("counter", k=str(index)), 1)
            index += 1
        assert path.stat().st_size == 128 * 1024
        store.close()

    def test_partial_records_wait_for_the_rest(self, tmp_path: Path) -> None:
        """A record cut short (a header, or values, still being written) is not read yet;
        the complete ones before it are."""
        from ron_metrics.multiprocess.store import FileIndex

        path = tmp_path / "member-1-6.db"
        store = MemberStore(str(path))
        store.add(store.slot(_key("counter", name="a"), 1), 2)
        store.add(store.slot(_key("counter", name="b"), 1), 3)
        whole = path.read_bytes()
        store.close()
        used = int.from_bytes(whole[8:16], "little")
        first = dict(parse_records(whole))
        assert first == {
            _key("counter", name="a"): (2.0,),
            _key("counter", name="b"): (3.0,),
        }
        second_starts = 16 + 8 + ((len(_key("counter", name="a")) + 7) & ~7) + 8
        for cut in (
            second_starts + 4,
            used - 4,
        ):  # inside the header; inside the values
            data = bytearray(whole[:cut])
            data[8:16] = cut.to_bytes(8, "little")  # the header claims what is there
            assert FileIndex().read(bytes(data)) == [
                (_key("counter", name="a"), (2.0,))
            ]
        empty = bytearray(whole[:16])
        empty[8:16] = (16).to_bytes(8, "little")
        assert FileIndex().read(bytes(empty)) == []

    @pytest.mark.parametrize(
        ("data", "why"),
        [
            (b"RONMP00", "too short for a store file"),
            (b"x" * 64, "not a ron-metrics store file"),
        ],
    )
    def test_what_is_not_a_store_file_says_why(self, data: bytes, why: str) -> None:
        with pytest.raises(ValueError, match=why):
            parse_records(data)

    def test_a_shrunk_or_broken_file_says_why(self, tmp_path: Path) -> None:
        from ron_metrics.multiprocess.store import FileIndex

        path = tmp_path / "member-1-7.db"
        store = MemberStore(str(path))
        store.add(store.slot(_key("counter", name="a"), 1), 2)
        whole = path.read_bytes()
        store.close()
        index = FileIndex()
        index.read(whole)
        shorter = bytearray(whole[:16])
        shorter[8:16] = (16).to_bytes(8, "little")
        with pytest.raises(ValueError, match="shrank since it was last read"):
            index.read(bytes(shorter))
        broken = bytearray(whole)
        broken[24:26] = b"\xff\xfe"  # the key is no longer UTF-8
        with pytest.raises(ValueError, match="malformed record"):
            FileIndex().read(bytes(broken))

    def test_existing_path_is_never_reused(self, tmp_path: Path) -> None:
        """A store is created exclusively: an existing file (or symlink) is an error."""
        target = tmp_path / "member-1-3.db"
        target.symlink_to(tmp_path / "elsewhere")
        with pytest.raises(FileExistsError):
            MemberStore(str(target))


class TestMerge:
    def members(self) -> list[tuple[bool, list[tuple[str, tuple[float, ...]]]]]:
        return [
            (
                True,
                [
                    (_key("counter"), (3.0,)),
                    (_key("updown"), (2.0,)),
                    (_key("gauge"), (10.0, 100.0)),
                    (_key("histogram"), (4.0, 1.0, 3.0, 1.0, 1.0, 0.0)),
                ],
            ),
            (
                False,  # an exited member
                [
                    (_key("counter"), (5.0,)),
                    (_key("updown"), (7.0,)),
                    (_key("gauge"), (99.0, 300.0)),
                    (_key("histogram"), (6.0, 0.5, 5.5, 1.0, 0.0, 1.0)),
                ],
            ),
            (True, [(_key("updown"), (1.0,)), (_key("gauge"), (4.0, 200.0))]),
        ]

    def test_counters_and_histograms_keep_exited_members(self) -> None:
        """Totals that outlive a process are summed over live and exited members."""
        merged = merge(self.members(), gauge_policy="last")
        assert merged[_key("counter")].values == [8.0]
        assert merged[_key("histogram")].values == [10.0, 0.5, 5.5, 2.0, 1.0, 1.0]

    def test_up_down_counters_and_gauges_count_live_members_only(self) -> None:
        """What an exited worker held is gone: up-down counters sum the live ones."""
        merged = merge(self.members(), gauge_policy="last")
        assert merged[_key("updown")].values == [3.0]
        assert merged[_key("gauge")].values[0] == 4.0  # written last (t=200)

    @pytest.mark.parametrize(
        ("policy", "value"), [("last", 4.0), ("max", 10.0), ("min", 4.0), ("sum", 14.0)]
    )
    def test_gauge_policies(self, policy: str, value: float) -> None:
        """Each documented gauge policy over the live members."""
        assert merge(self.members(), gauge_policy=policy)[_key("gauge")].values[0] == (
            value
        )


def _write_member(directory: Path, pid: int, value: float) -> Path:
    store = MemberStore(str(directory / f"member-{pid}-1.db"))
    store.add(store.slot(_key("counter", name="jobs"), 1), value)
    store.close()  # no lock held: this member has exited
    return directory / f"member-{pid}-1.db"


def _jobs(group: Group) -> float:
    data = group.collect(Resource({}))
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if metric.name == "jobs":
                return float(metric.data.data_points[0].value)  # type: ignore[union-attr]  # a Sum
    return 0.0


def _histogram(group: Group) -> tuple[float, list[int]]:
    data = group.collect(Resource({}))
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if metric.name == "m":
                point = metric.data.data_points[0]
                return point.sum, list(point.bucket_counts)  # type: ignore[union-attr]  # a histogram point
    return 0.0, []


class TestGroup:
    def test_new_run_clears_the_previous_one(self, tmp_path: Path) -> None:
        """Joining while no member lives starts a new run: old totals are removed."""
        directory = tmp_path / "group"
        directory.mkdir(mode=0o700)
        _write_member(directory, 1, 5)
        group = Group(str(directory), gauge_policy="last")
        group.join()
        assert _jobs(group) == 0.0
        group.leave()

    def test_joining_a_live_group_keeps_exited_members(self, tmp_path: Path) -> None:
        """A member joining while another lives keeps the exited members' totals."""
        directory = tmp_path / "group"
        first = Group(str(directory), gauge_policy="last")
        store = first.join()
        store.add(store.slot(_key("counter", name="jobs"), 1), 2)
        _write_member(directory, 99, 5)
        second = Group(str(directory), gauge_policy="last")
        second.join()
        assert _jobs(second) == 7.0
        first.leave()
        assert _jobs(second) == 7.0  # first exited: its counter stays
        second.leave()

    def test_only_one_member_leads(self, tmp_path: Path) -> None:
        """The serving lease is exclusive across the group; stepping down frees it."""
        directory = tmp_path / "group"
        first = Group(str(directory), gauge_policy="last")
        second = Group(str(directory), gauge_policy="last")
        first.join()
        second.join()
        assert first.try_lead()
        assert not second.try_lead()
        first.step_down()
        assert second.try_lead()
        first.leave()
        second.leave()

    def test_compaction_keeps_totals_and_bounds_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Many exited members fold into the archive: same total, fewer files."""
        monkeypatch.setattr(group_module, "COMPACT_AFTER", 3)
        directory = tmp_path / "group"
        group = Group(str(directory), gauge_policy="last")
        group.join()
        for pid in range(10, 15):
            _write_member(directory, pid, 1)
        assert _jobs(group) == 5.0  # compacts during this collection
        assert len(list(directory.glob("member-*.db"))) == 1  # only ourselves
        _write_member(directory, 20, 2)
        assert _jobs(group) == 7.0
        group.leave()

    def test_unsafe_directory_is_a_config_error(self, tmp_path: Path) -> None:
        """A directory others can write to is refused, naming the key."""
        directory = tmp_path / "open"
        directory.mkdir(mode=0o777)
        directory.chmod(0o777)
        with pytest.raises(ConfigError) as caught:
            Group(str(directory), gauge_policy="last").join()
        assert caught.value.keys == ("multiprocess.dir",)
        assert "0700" in str(caught.value)


FORKING = textwrap.dedent(
    """
    import os, sys, time
    import ron_metrics
    from opentelemetry import metrics
    port, directory = sys.argv[1], sys.argv[2]
    runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "f"},
        exporter={"prometheus": {"bind": f"127.0.0.1:{port}"}},
        multiprocess={"dir": directory}))
    jobs = metrics.get_meter("app").create_counter("jobs")
    jobs.add(1)  # the parent's, before the fork
    children = []
    for n in range(3):
        pid = os.fork()
        if pid == 0:
            jobs.add(10)
            os.write(1, f"child {os.getpid()}\\n".encode())  # one write: one line
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_join_the_group(tmp_path: Path) -> None:
    """start() then fork(): each child counts in its own file; the parent serves the sum."""
    port = reserved_port()
    with forking_group(FORKING, str(port), str(tmp_path / "group")):
        body = get_when_served(f"http://127.0.0.1:{port}/metrics").text
        assert "jobs_total 31.0" in body  # 1 (parent) + 3 x 10, none counted twice
        assert len(list((tmp_path / "group").glob("member-*.db"))) == 4


class TestHostileFiles:
    """
    Whatever a member or archive file holds, a collection answers from the healthy
    members, skips the bad file, and recovers once it is fixed or removed.
    """

    def _group(self, tmp_path: Path) -> tuple[Path, Group]:
        directory = tmp_path / "group"
        group = Group(str(directory), gauge_policy="last")
        store = group.join()
        store.add(store.slot(_key("counter", name="jobs"), 1), 3)
        self.rejected: list[tuple[str, int]] = []
        group.on_rejected = lambda reason, count: self.rejected.append((reason, count))
        return directory, group

    def test_a_symlinked_member_is_not_followed_and_is_counted(
        self, tmp_path: Path
    ) -> None:
        """A member name that is a symlink is never read through; each skip counts."""
        directory, group = self._group(tmp_path)
        honest = tmp_path / "honest"
        honest.mkdir(mode=0o700)
        target = _write_member(honest, 9, 100)
        (directory / "member-9-1.db").symlink_to(target)
        assert _jobs(group) == 3.0  # followed, it would add 100
        assert self.rejected == [("group_file", 1)]
        assert _jobs(group) == 3.0
        assert self.rejected == [("group_file", 1)] * 2  # once per collection
        group.leave()

    def test_a_second_name_of_a_member_is_read_once(self, tmp_path: Path) -> None:
        """A hard link named like a member adds nothing: one file, counted once."""
        directory, group = self._group(tmp_path)
        exited = _write_member(directory, 4, 5)
        assert _jobs(group) == 8.0
        os.link(exited, directory / "member-0-9.db")  # sorts first
        assert _jobs(group) == 8.0
        assert self.rejected == [("group_file", 1)]
        group.leave()

    def test_member_files_are_private_whatever_the_umask(self, tmp_path: Path) -> None:
        """Member files are created 0600 even under umask 022 (0644 otherwise)."""
        previous = os.umask(0o022)
        try:
            directory, group = self._group(tmp_path)
            _write_member(directory, 4, 1)
        finally:
            os.umask(previous)
        modes = {p.name: p.stat().st_mode & 0o777 for p in directory.glob("member-*")}
        assert len(modes) == 2
        assert set(modes.values()) == {0o600}, modes
        group.leave()

    def test_a_fifo_member_neither_blocks_join_nor_collection(
        self, tmp_path: Path
    ) -> None:
        """A FIFO named like a member (sorting first) is skipped at once."""
        directory, group = self._group(tmp_path)
        fifo = directory / "member-0-0.db"
        os.mkfifo(fifo, 0o600)
        joiner = Group(str(directory), gauge_policy="last")
        joiner.join()  # would block opening the FIFO
        assert _jobs(group) == 3.0
        assert self.rejected == [("group_file", 1)]
        fifo.unlink()
        assert _jobs(group) == 3.0
        assert self.rejected == [("group_file", 1)]  # recovered: nothing more
        joiner.leave()
        group.leave()

    @pytest.mark.parametrize(
        "content",
        [
            b"",
            b"garbage" * 10,
            b"RONMETR1" + b"\xff" * 64,
            os.urandom(4096),
        ],
        ids=["empty", "text", "bad-header", "random"],
    )
    def test_garbage_members_are_skipped(self, tmp_path: Path, content: bytes) -> None:
        """A member file of garbage is skipped; the healthy member's total stands."""
        directory, group = self._group(tmp_path)
        bad = directory / "member-1-1.db"
        bad.write_bytes(content)
        bad.chmod(0o600)
        assert _jobs(group) == 3.0
        assert self.rejected == [("group_file", 1)]
        bad.unlink()
        assert _jobs(group) == 3.0
        assert self.rejected == [("group_file", 1)]
        group.leave()

    def test_a_member_rewritten_shorter_is_skipped_then_read_again(
        self, tmp_path: Path
    ) -> None:
        """A file that shrinks after a read (struct.error before) is skipped."""
        directory, group = self._group(tmp_path)
        _write_member(directory, 7, 5)
        (path,) = list(directory.glob("member-7-*.db"))
        assert _jobs(group) == 8.0
        whole = path.read_bytes()
        path.write_bytes(whole[:40])
        assert _jobs(group) == 8.0  # skipped, not a crash: what it showed stands
        path.write_bytes(whole)
        assert _jobs(group) == 8.0  # read again from the start
        group.leave()

    @pytest.mark.parametrize(
        "content",
        [b"not json", b"[1, 2]", b'{"absorbed": 3, "records": []}', b"{}"],
        ids=["text", "list", "wrong-types", "missing-keys"],
    )
    def test_a_broken_archive_never_takes_totals_backwards(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
    ) -> None:
        """Garbage in archive.db: the last good archive stands in, nothing is lost."""
        monkeypatch.setattr(group_module, "COMPACT_AFTER", 2)
        directory, group = self._group(tmp_path)
        for pid in (10, 11):
            _write_member(directory, pid, 2)
        assert _jobs(group) == 7.0  # compacted into the archive
        archive = directory / "archive.db"
        good = archive.read_bytes()
        archive.write_bytes(content)
        assert _jobs(group) == 7.0
        _write_member(directory, 12, 1)
        _write_member(directory, 13, 1)
        assert _jobs(group) == 9.0  # no compaction over a broken archive
        archive.write_bytes(good)
        assert _jobs(group) == 9.0
        group.leave()

    def test_a_symlinked_archive_is_not_followed(self, tmp_path: Path) -> None:
        """archive.db as a symlink is never read through."""
        directory, group = self._group(tmp_path)
        elsewhere = tmp_path / "elsewhere.json"
        jobs = _key("counter", name="jobs")
        elsewhere.write_text(json.dumps({"absorbed": [], "records": [[jobs, [100.0]]]}))
        (directory / "archive.db").symlink_to(elsewhere)
        assert _jobs(group) == 3.0  # followed, it would add 100
        group.leave()

    def test_a_huge_sparse_member_is_refused_without_reading_it(
        self, tmp_path: Path
    ) -> None:
        """A 3 GiB sparse file is refused by its size, never read into memory."""
        import resource

        directory, group = self._group(tmp_path)
        huge = directory / "member-2-2.db"
        with huge.open("wb") as handle:
            handle.truncate(3 * 2**30)
        huge.chmod(0o600)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert _jobs(group) == 3.0
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown_kib < 256 * 1024
        group.leave()


class TestForgedValues:
    """A member file cannot drive a total backwards, to NaN, or to infinity."""

    def _two_members(self, tmp_path: Path) -> tuple[Path, Group, MemberStore, int]:
        directory = tmp_path / "group"
        group = Group(str(directory), gauge_policy="last")
        store = group.join()
        store.add(store.slot(_key("counter", name="jobs"), 1), 3)
        other = MemberStore(str(directory / "member-5-1.db"))
        offset = other.slot(_key("counter", name="jobs"), 1)
        other.add(offset, 4)
        return directory, group, other, offset

    @pytest.mark.parametrize(
        "forged", [1.0, -50.0, math.nan, math.inf, -math.inf], ids=str
    )
    def test_a_forged_counter_value_is_refused(
        self, tmp_path: Path, forged: float
    ) -> None:
        """Lower, negative, NaN or infinite: the member's last honest value stands."""
        import struct

        _, group, other, offset = self._two_members(tmp_path)
        rejected: list[tuple[str, int]] = []
        group.on_rejected = lambda reason, count: rejected.append((reason, count))
        assert _jobs(group) == 7.0
        struct.pack_into("<d", other._map, offset, forged)
        assert _jobs(group) == 7.0
        assert rejected == [("group_value", 1)]
        struct.pack_into("<d", other._map, offset, 10.0)  # honest again: admitted
        assert _jobs(group) == 13.0
        other.close()
        group.leave()

    def test_a_malformed_key_skips_the_file_but_keeps_its_counts(
        self, tmp_path: Path
    ) -> None:
        """A key that is not a series key: the file's last admitted values stand."""
        directory, group, other, _ = self._two_members(tmp_path)
        assert _jobs(group) == 7.0
        other.slot("not json at all", 1)
        assert _jobs(group) == 7.0
        stranger = MemberStore(str(directory / "member-6-1.db"))
        stranger.slot('["a","b","c","wrong-kind","","",null,[]]', 1)
        stranger.slot(_key("counter", name="jobs"), 1)
        stranger.close()
        assert _jobs(group) == 7.0  # never admitted: contributes nothing
        other.close()
        group.leave()

    def test_an_archive_cannot_hide_a_live_member(self, tmp_path: Path) -> None:
        """An archive naming a live member as absorbed: the member still counts."""
        directory, group, other, offset = self._two_members(tmp_path)
        fcntl.flock(other.fd, fcntl.LOCK_SH)  # alive, as a joined member is
        assert _jobs(group) == 7.0
        names = [p.name for p in directory.glob("member-*.db")]
        (directory / "archive.db").write_text(
            json.dumps({"absorbed": names, "records": []})
        )
        assert _jobs(group) == 7.0
        other.add(offset, 1)
        assert _jobs(group) == 8.0  # still counted live, not frozen
        other.close()
        group.leave()

    @pytest.mark.parametrize("how", ["removed", "absorbed-by-forged-archive"])
    def test_exited_totals_cannot_be_taken_away(self, tmp_path: Path, how: str) -> None:
        """An exited member's file removed, or claimed by an archive that does not
        hold its counts: the group total stands, counted once as held."""
        directory, group = tmp_path / "group", None
        group = Group(str(directory), gauge_policy="last")
        store = group.join()
        store.add(store.slot(_key("counter", name="jobs"), 1), 3)
        exited = _write_member(directory, 8, 5)
        rejected: list[tuple[str, int]] = []
        group.on_rejected = lambda reason, count: rejected.append((reason, count))
        assert _jobs(group) == 8.0
        if how == "removed":
            exited.unlink()
        else:
            (directory / "archive.db").write_text(
                json.dumps({"absorbed": [exited.name], "records": []})
            )
        assert _jobs(group) == 8.0
        assert rejected == [("group_value", 1)]
        assert _jobs(group) == 8.0
        assert rejected == [("group_value", 1)]  # still held: not counted again
        store.add(store.slot(_key("counter", name="jobs"), 1), 2)
        assert _jobs(group) == 8.0  # 3 + 2 live: still below what was shown
        store.add(store.slot(_key("counter", name="jobs"), 1), 10)
        assert _jobs(group) == 15.0  # past it: the real counts show again
        group.leave()

    def test_a_histogram_total_cannot_fall(self, tmp_path: Path) -> None:
        """A histogram's buckets and sum never fall when a file is taken away."""
        directory = tmp_path / "group"
        group = Group(str(directory), gauge_policy="last")
        group.join()
        exited = MemberStore(str(directory / "member-3-1.db"))
        offset = exited.slot(_key("histogram"), 6)
        exited.observe(offset, 0, 0.5)
        exited.observe(offset, 2, 9.0)
        exited.close()
        before = _histogram(group)
        assert before == (9.5, [1, 0, 1])
        os.unlink(exited.path)
        assert _histogram(group) == before
        group.leave()

    def test_the_key_check_names_each_problem(self) -> None:
        """Layouts per kind are checked; unknown kinds and wrong shapes refused."""
        from ron_metrics.multiprocess.guard import check_key

        assert check_key(_key("counter"), (1.0,)) == "counter"
        assert check_key(_key("gauge"), (1.0, 2.0)) == "gauge"
        assert check_key(_key("histogram"), (0.0, 0.0, 0.0, 1, 2, 3)) == "histogram"
        for key, values in [
            ("[1, 2]", (1.0,)),
            ("{}", (1.0,)),
            (_key("counter"), (1.0, 2.0)),
            (_key("histogram"), (0.0, 0.0, 0.0, 1.0)),
            ('["a","b","c","wrong","","",null,[]]', (1.0,)),
        ]:
            with pytest.raises(ValueError, match="record"):
                check_key(key, values)


class TestGuardRules:
    """The admission rules and the totals floor, value by value."""

    HISTOGRAM = _key("histogram")  # bounds (1, 5): sum, min, max, 3 buckets

    def test_a_counter_going_back_is_refused_and_its_last_value_stands(self) -> None:
        from ron_metrics.multiprocess.guard import ValueGuard

        guard = ValueGuard()
        assert not guard.has_values()
        first, second = _key("counter", name="a"), _key("counter", name="b")
        assert guard.admit([(first, (3.0,)), (second, (1.0,))]) == [
            (first, (3.0,)),
            (second, (1.0,)),
        ]
        assert guard.has_values() and guard.refused == 0
        assert guard.admit([(first, (2.0,)), (second, (0.0,))]) == [
            (first, (3.0,)),
            (second, (1.0,)),
        ]
        assert guard.refused == 2
        assert guard.admit([(first, (3.0,))]) == [(first, (3.0,))]  # equal is fine
        assert guard.refused == 2

    @pytest.mark.parametrize("kind", ["updown", "oupdown"])
    def test_live_values_only_refuse_nan(self, kind: str) -> None:
        from ron_metrics.multiprocess.guard import ValueGuard

        guard = ValueGuard()
        key = _key(kind)
        assert guard.admit([(key, (5.0,))]) == [(key, (5.0,))]
        assert guard.admit([(key, (-7.5,))]) == [(key, (-7.5,))]  # may go down
        assert guard.admit([(key, (math.nan,))]) == [(key, (-7.5,))]
        assert guard.refused == 1

    @pytest.mark.parametrize(
        ("values", "admitted"),
        [
            ((1.5, math.inf, -math.inf, 0, 0, 0), True),  # nothing observed yet
            ((9.0, 0.5, 8.5, 1, 0, 1), True),
            ((math.nan, 0.5, 8.5, 1, 0, 1), False),  # sum not finite
            ((math.inf, 0.5, 8.5, 1, 0, 1), False),
            ((9.0, 0.5, 8.5, -1, 0, 1), False),  # first bucket negative
            ((9.0, 0.5, 8.5, 1, 0, math.nan), False),  # last bucket NaN
        ],
    )
    def test_histogram_values(self, values: tuple[float, ...], admitted: bool) -> None:
        from ron_metrics.multiprocess.guard import ValueGuard

        guard = ValueGuard()
        assert bool(guard.admit([(self.HISTOGRAM, values)])) is admitted

    @pytest.mark.parametrize("bucket", [3, 4, 5])
    def test_a_histogram_bucket_going_back_is_refused(self, bucket: int) -> None:
        from ron_metrics.multiprocess.guard import ValueGuard

        guard = ValueGuard()
        before = (9.0, 0.5, 8.5, 2.0, 2.0, 2.0)
        guard.admit([(self.HISTOGRAM, before)])
        lower = list(before)
        lower[bucket] = 1.0
        lower[0] = 20.0  # the sum grew: only the bucket is wrong
        assert guard.admit([(self.HISTOGRAM, tuple(lower))]) == [
            (self.HISTOGRAM, before)
        ]
        grown = (20.0, 0.1, 30.0, 2.0, 2.0, 3.0)  # min and max move freely
        assert guard.admit([(self.HISTOGRAM, grown)]) == [(self.HISTOGRAM, grown)]

    @pytest.mark.parametrize(
        "key",
        [
            '["a","b","c","counter","",""]',  # too few fields
            '["a","b","c","weird","","",[1.0],[]]',  # unknown kind with bounds
            '["a","b","c","histogram","","",null,[]]',  # histogram without bounds
            '["a","b","c",7,"","",null,[]]',  # kind not a string
        ],
    )
    def test_keys_that_are_not_series_keys(self, key: str) -> None:
        from ron_metrics.multiprocess.guard import check_key

        with pytest.raises(ValueError, match="record's key"):
            check_key(key, (1.0, 2.0, 3.0, 4.0, 5.0))

    def test_the_floor_holds_falling_totals_once(self) -> None:
        from ron_metrics.multiprocess.guard import TotalsFloor
        from ron_metrics.multiprocess.merge import Merged

        floor = TotalsFloor()
        counter, gauge = _key("counter"), _key("gauge")
        hist = self.HISTOGRAM

        def merged(count: float, hist_values: list[float]) -> dict[str, Merged]:
            return {
                counter: Merged("counter", [count]),
                gauge: Merged("gauge", [1.0, 0.0]),
                hist: Merged("histogram", hist_values),
            }

        base = [10.0, 20.0, 30.0, 1.0, 1.0, 1.0]
        assert floor.hold(merged(5, base)) == 0
        assert floor.hold(merged(5, list(base))) == 0  # unchanged is not held
        # min (index 1) below the old sum, sum below the old min: neither is a fall.
        moved = [15.0, 0.5, 40.0, 1.0, 1.0, 1.0]
        assert floor.hold(merged(6, moved)) == 0
        now = merged(4, moved)
        assert floor.hold(now) == 1
        assert now[counter].values == [6]
        assert floor.hold(merged(4, moved)) == 0  # still held: counted once
        for index, value in [(0, 14.0), (3, 0.0), (4, 0.0), (5, 0.0)]:
            fallen = list(moved)
            fallen[index] = value
            now = merged(6, fallen)
            assert floor.hold(now) == 1, index
            assert now[hist].values == moved
            assert floor.hold(merged(6, moved)) == 0
        grown = merged(6, [15.0, 0.5, 40.0, 1.0, 1.0, 1.0, 0.0])  # a new layout
        assert floor.hold(grown) == 1
        missing: dict[str, Merged] = {}
        assert floor.hold(missing) == 1  # the histogram was held already
        assert missing[hist].values == moved
        assert missing[counter].values == [6] and gauge not in missing


class TestArchiveFile:
    """archive.db is written whole, privately, never through a link, from readable files."""

    def test_unreadable_exited_files_are_neither_folded_nor_absorbed(
        self, tmp_path: Path
    ) -> None:
        from ron_metrics.multiprocess.archive import read_archive, write_archive

        directory = tmp_path / "group"
        directory.mkdir(mode=0o700)
        good = _write_member(directory, 1, 5)
        garbage = directory / "member-2-1.db"
        garbage.write_bytes(b"garbage" * 10)
        missing = directory / "member-3-1.db"
        write_archive(
            directory, [good, garbage, missing], frozenset(), gauge_policy="last"
        )
        absorbed, records = read_archive(directory)
        assert absorbed == {good.name}
        assert records == [(_key("counter", name="jobs"), (5.0,))]

    def test_the_archive_is_private_whole_and_never_written_through_a_link(
        self, tmp_path: Path
    ) -> None:
        from ron_metrics.multiprocess.archive import (
            ARCHIVE,
            read_archive,
            write_archive,
        )

        directory = tmp_path / "group"
        directory.mkdir(mode=0o700)
        good = _write_member(directory, 1, 5)
        leftover = directory / f".{ARCHIVE}.{os.getpid()}"
        leftover.write_text(" " * 10_000 + "trailing garbage")  # a crashed write's file
        previous = os.umask(0o022)
        try:
            write_archive(directory, [good], frozenset(), gauge_policy="last")
        finally:
            os.umask(previous)
        assert read_archive(directory)[0] == {good.name}  # parses: nothing left over
        assert (directory / ARCHIVE).stat().st_mode & 0o777 == 0o600
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_text("untouched")
        leftover.symlink_to(elsewhere)
        with pytest.raises(OSError, match="Too many levels of symbolic links"):
            write_archive(
                directory, [good], frozenset({good.name}), gauge_policy="last"
            )
        assert elsewhere.read_text() == "untouched"

    def test_an_archive_of_the_wrong_shape_says_so(self, tmp_path: Path) -> None:
        from ron_metrics.multiprocess.archive import read_archive

        directory = tmp_path / "group"
        directory.mkdir(mode=0o700)
        (directory / "archive.db").write_text('{"absorbed": 3, "records": []}')
        with pytest.raises(ValueError, match="not a ron-metrics archive"):
            read_archive(directory)
