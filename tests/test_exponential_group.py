"""
Exponential histograms in a multi-process group: members of different scales and
windows merged as the data model says, exact through a member killed, on both paths.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ron_metrics.multiprocess.exponential_record import HEADER, combine, dense_buckets


def _record(scale: int, start: int, buckets: dict[int, float]) -> list[float]:
    max_size = 8
    values = [float(sum(buckets.values())), 1.0, 1.0, 1.0, 0.0, float(scale)]
    values += [float(start)] + [0.0] * max_size
    for index, count in buckets.items():
        values[HEADER + index - start] = count
    return values


def test_merging_members_of_different_scales_downscales_to_the_coarsest() -> None:
    """Scale 3 and scale 1 merge at scale 1 (indexes >> 2), then coarsen to fit."""
    fine = _record(3, 0, {0: 1.0, 5: 2.0, 7: 1.0})  # >> 2: 0, 1, 1
    coarse = _record(1, 0, {1: 1.0, 4: 3.0})
    merged = combine(fine, coarse, 8)
    assert dense_buckets(merged) == (1, 0, [1, 4, 0, 0, 3])
    assert merged[0] == 8.0
    # Either order: the merge is symmetric.
    assert dense_buckets(combine(coarse, fine, 8)) == dense_buckets(merged)
    wide = _record(1, 0, {0: 1.0})
    far = _record(1, 0, {7: 1.0})
    far[HEADER + 7] = 0.0
    far[6] = 20.0  # window start 20: bucket 27
    far[HEADER + 7] = 1.0
    scale, offset, counts = dense_buckets(combine(wide, far, 8))
    # 0 .. 27 spans 28 buckets: two scales coarser (0 .. 6) fits 8.
    assert (scale, offset, counts) == (-1, 0, [1, 0, 0, 0, 0, 0, 1])


def _key(max_size: int = 8) -> str:
    from ron_metrics.multiprocess.store import series_key

    return series_key(
        scope=("app", ""),
        name="lat",
        kind="exponential",
        unit="",
        description="",
        bounds=[max_size, 20],
        attributes={},
    )


def test_the_guard_admits_only_what_an_honest_writer_holds() -> None:
    """Count = zero + buckets, finite and not negative, whole scale and window in
    range, the count never below the file's last: else the last admitted stands."""
    from ron_metrics.multiprocess.guard import ValueGuard, check_key

    guard = ValueGuard()
    honest = tuple(_record(3, 0, {0: 1.0, 5: 2.0}))
    assert guard.admit([(_key(), honest)]) == [(_key(), honest)]
    forged = []
    for at, value in ((0, 99.0), (5, 0.5), (5, 21.0), (6, math.nan), (HEADER, -1.0)):
        bad = list(honest)
        bad[at] = value
        forged.append(tuple(bad))
    fewer = tuple(_record(3, 0, {0: 1.0}))
    for bad_values in [*forged, fewer]:
        assert guard.admit([(_key(), bad_values)]) == [(_key(), honest)]
    assert guard.refused == len(forged) + 1
    with pytest.raises(ValueError, match="holds"):
        check_key(_key(max_size=9), honest)


def test_exited_members_fold_into_the_archive_with_the_same_histogram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members of different scales exit and are compacted into archive.db: the
    group's histogram is the one it showed before, and later members add to it."""
    from opentelemetry.sdk.resources import Resource

    from ron_metrics.multiprocess import group as group_module
    from ron_metrics.multiprocess.exponential_record import ExponentialWriter
    from ron_metrics.multiprocess.group import Group
    from ron_metrics.multiprocess.store import MemberStore

    def histogram(group: Group) -> tuple[int, float, int, list[int]]:
        data = group.collect(Resource({}))
        for scope in data.resource_metrics[0].scope_metrics:
            for found in scope.metrics:
                if found.name == "lat":
                    point: Any = found.data.data_points[0]
                    return (
                        point.count,
                        point.sum,
                        point.scale,
                        point.positive.bucket_counts,
                    )
        raise AssertionError("no lat")

    def exited_member(pid: int, values: list[float]) -> None:
        store = MemberStore(str(directory / f"member-{pid}-1.db"))
        writer = ExponentialWriter(store, _key(), 8, 20)
        for value in values:
            writer.observe(value)
        store.close()

    monkeypatch.setattr(group_module, "COMPACT_AFTER", 3)
    directory = tmp_path / "group"
    group = Group(str(directory), gauge_policy="last")
    group.join()
    exited_member(10, [1.0, 1.1, 1.2])  # a fine scale
    exited_member(11, [1e-3, 1.0, 1e3])  # a coarse one
    before = histogram(group)
    for pid in range(12, 16):
        exited_member(pid, [])  # enough exited members to compact
    after = histogram(group)
    assert after == before
    assert len(list(directory.glob("member-*.db"))) == 1  # only ourselves
    exited_member(20, [1e3])
    count, total, _scale, buckets = histogram(group)
    assert (count, sum(buckets)) == (7, 7)
    assert total == pytest.approx(sum([1.0, 1.1, 1.2, 1e-3, 1.0, 1e3, 1e3]))
    group.leave()


@pytest.mark.parametrize(
    "bounds",
    [None, [8], [8, 20, 1], [8.0, 20], [True, 20], [8, "20"], [1, 20], [16385, 20]],
)
def test_an_exponential_key_must_carry_its_shape(bounds: object) -> None:
    """[max_size, max_scale] where explicit histograms keep their bounds: two
    whole numbers (not booleans), the size from 2 to 16,384."""
    import json

    from ron_metrics.multiprocess.guard import check_key

    fields = json.loads(_key())
    fields[6] = bounds
    key = json.dumps(fields, separators=(",", ":"))
    with pytest.raises(ValueError, match=r"unknown kind|not a series key"):
        check_key(key, tuple(_record(3, 0, {0: 1.0})))


@pytest.mark.parametrize("max_size", [2, 16384])
def test_the_size_bounds_are_inclusive(max_size: int) -> None:
    from ron_metrics.multiprocess.guard import check_key

    values = (0.0, 0.0, math.inf, -math.inf, 0.0, 20.0, 0.0) + (0.0,) * max_size
    assert check_key(_key(max_size), values) == "exponential"
    fields = _key(max_size).replace('"exponential"', "5")
    with pytest.raises(ValueError, match="not a series key"):
        check_key(fields, values)


@pytest.mark.parametrize(
    ("at", "value", "admitted"),
    [
        (5, -10.0, True),
        (5, -11.0, False),
        (5, 20.0, True),
        (5, 2.5, False),
        (6, float(2**31 - 1), True),
        (6, float(-(2**31) + 1), True),
        (6, float(2**31), False),
        (6, 1.5, False),
        (6, math.inf, False),
        (1, -0.5, False),
        (1, math.nan, False),
        (4, math.inf, False),
    ],
)
def test_the_guard_bounds(at: int, value: float, admitted: bool) -> None:
    """Scale -10 … 20 and a window start below 2**31 in size, whole; a finite,
    non-negative sum and zero count. A fresh record (min +inf, max -inf) is fine."""
    from ron_metrics.multiprocess.guard import ValueGuard

    values = [0.0, 0.0, math.inf, -math.inf, 0.0, 20.0, 0.0] + [0.0] * 8
    values[at] = value
    guard = ValueGuard()
    assert bool(guard.admit([(_key(), tuple(values))])) is admitted


def test_an_unchanged_count_is_admitted_again() -> None:
    from ron_metrics.multiprocess.guard import ValueGuard

    guard = ValueGuard()
    same = tuple(_record(3, 0, {0: 1.0}))
    assert guard.admit([(_key(), same)]) == [(_key(), same)]
    assert guard.admit([(_key(), same)]) == [(_key(), same)]
    assert guard.refused == 0


def test_the_group_floor_holds_an_exponential_total_that_fell() -> None:
    """A merged count or sum below the last reported one is held; equal is not."""
    from ron_metrics.multiprocess.guard import TotalsFloor
    from ron_metrics.multiprocess.merge import Merged

    floor = TotalsFloor()
    first = _record(3, 0, {0: 2.0})
    first[1] = 5.0
    assert floor.hold({_key(): Merged("exponential", list(first))}) == 0
    assert floor.hold({_key(): Merged("exponential", list(first))}) == 0
    fewer = _record(3, 0, {0: 1.0})
    fewer[1] = 5.0
    merged = {_key(): Merged("exponential", fewer)}
    assert floor.hold(merged) == 1
    assert merged[_key()].values == first
    smaller = list(first)
    smaller[1] = 4.0
    merged = {_key(): Merged("exponential", smaller)}
    assert floor.hold(merged) == 0  # still held since the last collection
    assert merged[_key()].values == first


def _writer_record(tmp_path: Path, values: list[float], max_size: int = 8) -> Any:
    from ron_metrics.multiprocess.exponential_record import ExponentialWriter
    from ron_metrics.multiprocess.store import MemberStore, parse_records, read_file

    store = MemberStore(str(tmp_path / "member-1-1.db"))
    writer = ExponentialWriter(store, _key(max_size), max_size, 20)
    for value in values:
        writer.observe(value)
    store.close()
    records = parse_records(read_file(tmp_path / "member-1-1.db"))
    ((key, record),) = records  # the last version of the one key
    assert key == _key(max_size)
    return record


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 0.0],
        [1.5],
        [1.0, 2.0, 4.0, 8.0],  # exact powers of two
        [0.0, 3.0, 1e-3, 1e3, 0.0, 7.0, 1e6, 1e-9],  # windows move, scales coarsen
        [
            2.0 ** (k / 8) for k in range(1, 9)
        ],  # eight buckets at scale 3: a full window
        [2.0 ** (k / 8) for k in range(8, 0, -1)],  # the same, from the top
    ],
)
def test_a_writer_record_holds_every_value_in_its_bucket(
    tmp_path: Path, values: list[float]
) -> None:
    """Whatever order, range and zeros: count, zero count, sum, min, max, and each
    value counted in the bucket its own index maps to at the record's scale."""
    from ron_metrics.fast.exponential import index_of

    record = _writer_record(tmp_path, values)
    scale, offset, counts = dense_buckets(record)
    assert record[0] == len(values)
    assert record[4] == values.count(0.0)
    assert record[1] == pytest.approx(math.fsum(values))
    assert (record[2], record[3]) == (min(values), max(values))
    expected: dict[int, int] = {}
    for value in values:
        if value:
            index = index_of(value, scale)
            expected[index] = expected.get(index, 0) + 1
    got = {offset + i: count for i, count in enumerate(counts) if count}
    assert got == expected
    assert len(counts) <= 8
    if not expected:
        assert (offset, counts) == (0, [])
    assert combine(list(record), record, 8)[4] == 2 * record[4]


def test_a_window_moves_only_for_a_value_outside_it(tmp_path: Path) -> None:
    """Once the values have set the scale, more values inside the window are
    counted in place; a value outside it appends the record once more."""
    from ron_metrics.multiprocess.store import read_file

    inside = [2.0 ** (k / 8) for k in range(1, 5)]

    def versions(values: list[float]) -> int:
        path = tmp_path / "member-1-1.db"
        path.unlink(missing_ok=True)
        _writer_record(tmp_path, values)
        return read_file(path).count(_key().encode())

    settled = versions(inside)
    assert versions(inside * 3) == settled
    assert versions([*inside * 3, 1e6]) == settled + 1
