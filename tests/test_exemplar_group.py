"""
Exemplars in a multi-process group: every member's kept in its file, the serving
process writes the most recent per bucket across members (a killed one included),
and what a member file may claim about them is checked like every other value.
"""

from __future__ import annotations

import json
import math
import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics.export import NumberDataPoint
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import forking_group, get_when_served
from ron_metrics.multiprocess import exemplar_record as records
from ron_metrics.multiprocess.guard import ValueGuard, check_key
from ron_metrics.multiprocess.store import series_key
from ron_metrics.testing import reserved_port

OPENMETRICS = "application/openmetrics-text;version=1.0.0"

# Each process measures inside a sampled remote span with a known trace id
# (0x1000 + its number; the parent is 0), one after the other.
GROUP_EXEMPLARS = textwrap.dedent(
    """
    import os, sys, time
    import ron_metrics
    from opentelemetry import context, metrics, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    port, directory = sys.argv[1], sys.argv[2]
    runtime = ron_metrics.start(ron_metrics.load_config(env={}, service={"name": "f"},
        exporter={"prometheus": {"bind": f"127.0.0.1:{port}"}},
        multiprocess={"dir": directory},
        cardinality={"instruments": {"lat": {"buckets": [0.1, 1.0]}}}))
    meter = metrics.get_meter("app")
    hits, latency = meter.create_counter("hits"), meter.create_histogram("lat")

    def traced(n):
        span = SpanContext(0x1000 + n, 0x100 + n, True, TraceFlags(1))
        context.attach(trace.set_span_in_context(NonRecordingSpan(span)))

    traced(0)
    latency.record(0.05)
    latency.record(5.0)
    hits.add(1)
    for n in range(1, 4):
        pid = os.fork()
        if pid == 0:
            time.sleep(0.3 * n)
            traced(n)
            latency.record(0.5)
            hits.add(1)
            os.write(1, f"child {os.getpid()}\\n".encode())  # one write: one line
            time.sleep(60)
            os._exit(0)
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_serving_member_writes_the_latest_exemplar_of_every_member(
    tmp_path: Path,
) -> None:
    """Per bucket the most recent exemplar across the group: the parent's where
    only it recorded, the last child's where all did, after that child is killed."""
    port = reserved_port()
    with forking_group(GROUP_EXEMPLARS, str(port), str(tmp_path / "group")) as pids:
        os.kill(pids[2], signal.SIGKILL)  # the last to record: its file stays
        get_when_served(f"http://127.0.0.1:{port}/metrics")
        body = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": OPENMETRICS},
            timeout=10,
        ).text
    marks = {}
    values = {}
    for family in text_string_to_metric_families(body):  # type: ignore[no-untyped-call]  # untyped upstream
        for sample in family.samples:
            key = (sample.name, sample.labels.get("le", ""))
            values[key] = sample.value
            if sample.exemplar is not None:
                marks[key] = (sample.exemplar.labels["trace_id"], sample.exemplar.value)
    assert values[("hits_total", "")] == 4
    assert marks[("hits_total", "")] == (f"{0x1003:032x}", 1)
    assert marks[("lat_bucket", "0.1")] == (f"{0x1000:032x}", 0.05)
    assert marks[("lat_bucket", "1.0")] == (f"{0x1003:032x}", 0.5)
    assert marks[("lat_bucket", "+Inf")] == (f"{0x1000:032x}", 5.0)


def _series(kind: str = "histogram", bounds: object = (0.1, 1.0)) -> str:
    return series_key(
        scope=("app", "1.0"),
        name="lat",
        kind=kind,
        unit="s",
        description="",
        bounds=list(bounds) if isinstance(bounds, tuple) else bounds,  # type: ignore[arg-type]  # a shape list
        attributes={"route": "/a", "code": 200, "ok": True, "ratio": 0.5},
    )


class _Span:
    def __init__(self, trace_id: int, span_id: int) -> None:
        self.trace_id, self.span_id = trace_id, span_id


def test_an_exemplar_key_leads_back_to_its_series_exactly() -> None:
    """Whatever the attribute types, the series key is recovered byte for byte."""
    for kind, bounds in (
        ("histogram", (0.1, 1.0)),
        ("counter", None),
        ("exponential", [8, 20]),
    ):
        series = _series(kind, bounds)
        assert records.target_key(records.exemplar_key(series)) == series


def test_a_slot_is_laid_out_as_documented() -> None:
    """Whole seconds, nanoseconds, the value, four 32-bit parts of the trace id
    and two of the span id, most significant first."""
    span = _Span(0x11111111_22222222_33333333_44444444, 0x55555555_66666666)
    assert records.encode(0.25, 1_500_000_007, span) == (
        1.0,
        500_000_007.0,
        0.25,
        float(0x11111111),
        float(0x22222222),
        float(0x33333333),
        float(0x44444444),
        float(0x55555555),
        float(0x66666666),
    )


def test_a_slot_round_trips_every_part_in_place() -> None:
    span = _Span(0x11111111_22222222_33333333_44444444, 0x55555555_66666666)
    (kept,) = records.decode(records.encode(0.25, 1_500_000_007, span))
    assert (kept.trace_id, kept.span_id) == (span.trace_id, span.span_id)


def test_merge_keeps_the_most_recent_per_slot_across_members() -> None:
    """Live or exited, every member's exemplar record counts; per slot the most
    recent wins, and the series' own values merge as before."""
    from ron_metrics.multiprocess.merge import merge

    series = _series("counter", None)
    key = records.exemplar_key(series)
    early = records.encode(1.0, 10_000_000_000, _Span(1, 1))
    late = records.encode(2.0, 20_000_000_000, _Span(2, 2))
    merged = merge(
        [
            (True, [(series, (1.0,)), (key, early)]),
            (False, [(series, (2.0,)), (key, late)]),
            (True, [(series, (3.0,)), (key, early)]),
        ],
        gauge_policy="last",
    )
    assert merged[series].values == [6.0]
    assert merged[key].kind == records.KIND
    assert [e.trace_id for e in records.decode(merged[key].values)] == [2]


def test_slots_round_trip_the_widest_ids() -> None:
    """128-bit trace and 64-bit span ids, ns time and value survive a slot; an
    empty slot before a filled one is skipped, not the end."""
    trace_id, span_id = 2**128 - 1, 2**64 - 2
    at = 1_796_683_022_106_960_799
    values = (0.0,) * records.SLOT + records.encode(0.25, at, _Span(trace_id, span_id))
    values += records.encode(1.0, at - 5, None)  # always_on outside a span
    (no_ids, kept) = records.decode(values)
    assert (kept.trace_id, kept.span_id, kept.time_unix_nano) == (trace_id, span_id, at)
    assert kept.value == 0.25
    assert (no_ids.trace_id, no_ids.span_id, no_ids.time_unix_nano) == (
        None,
        None,
        at - 5,
    )
    assert records.decode((0.0,) * records.SLOT) == ()


def test_the_most_recent_per_slot_wins() -> None:
    older = list(records.encode(1.0, 10_000_000_000, _Span(1, 1)))
    older += records.encode(2.0, 30_000_000_000, _Span(2, 2))
    newer = list(records.encode(3.0, 20_000_000_000, _Span(3, 3)))
    newer += records.encode(4.0, 29_999_999_999, _Span(4, 4))
    records.combine(older, newer)
    assert [e.trace_id for e in records.decode(older)] == [3, 2]
    # A tie keeps what is there; the slots are compared one by one.
    same = list(records.encode(9.0, 20_000_000_000, _Span(9, 9)))
    same += records.encode(8.0, 40_000_000_000, _Span(8, 8))
    records.combine(older, same)
    assert [e.trace_id for e in records.decode(older)] == [3, 8]


def test_a_member_writes_each_exemplar_into_its_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record beside the series: a slot per bucket, each written in place,
    the others untouched; one writer per series; no store, nothing written."""
    from ron_metrics.multiprocess.aggregation import CURRENT, StoreRecord
    from ron_metrics.multiprocess.store import MemberStore, parse_records, read_file

    path = tmp_path / "member-1-1.db"
    store = MemberStore(str(path))
    monkeypatch.setattr(CURRENT, "store", store)
    histogram = StoreRecord(_series(), 6, ())
    writer = records.writer_of(histogram)
    assert records.writer_of(histogram) is writer
    writer.write(2, 5.0, 7_000_000_001, _Span(3, 4))
    writer.write(0, 0.05, 6_000_000_000, None)
    counter = StoreRecord(_series("counter", None), 1, ())
    records.writer_of(counter).write(0, 2.0, 8_000_000_000, _Span(1, 2))
    monkeypatch.setattr(CURRENT, "store", None)
    writer.write(1, 0.5, 9_000_000_000, _Span(5, 5))  # no store: dropped
    found = dict(parse_records(read_file(path)))
    values = found[records.exemplar_key(histogram.key)]
    assert len(values) == 3 * records.SLOT
    assert values[records.SLOT : 2 * records.SLOT] == (0.0,) * records.SLOT
    assert values[2 * records.SLOT : 3 * records.SLOT] == records.encode(
        5.0, 7_000_000_001, _Span(3, 4)
    )
    assert [(e.value, e.trace_id) for e in records.decode(values)] == [
        (0.05, None),
        (5.0, 3),
    ]
    (kept,) = records.decode(found[records.exemplar_key(counter.key)])
    assert (kept.value, kept.trace_id, kept.span_id) == (2.0, 1, 2)
    store.close()


@pytest.mark.parametrize(
    ("at", "value"),
    [
        (0, -1.0),
        (0, 1.5),
        (1, 1e9),
        (2, math.nan),
        (2, math.inf),
        (3, 2.0**32),
        (8, -1.0),
        (8, 0.5),
        (0, float(2**40)),
        (1, -1.0),
    ],
)
def test_the_guard_refuses_a_slot_no_member_writes(at: int, value: float) -> None:
    """Whole, in-range time and id parts and a finite value, or the last admitted
    slots stand in."""
    key = records.exemplar_key(_series())
    honest = records.encode(0.5, 5_000_000_000, _Span(7, 9)) * 3
    guard = ValueGuard()
    assert guard.admit([(key, honest)]) == [(key, honest)]
    forged = list(honest)
    forged[records.SLOT + at] = value
    assert guard.admit([(key, tuple(forged))]) == [(key, honest)]
    assert guard.refused == 1


@pytest.mark.parametrize(
    "bounds",
    [
        None,
        ["histogram"],
        ["gauge", None],
        ["histogram", 3],
        ["exponential", [1, 20]],
        [["counter"], None],
        [{"counter": 1}, None],
    ],
)
def test_an_exemplar_key_must_name_a_kind_that_keeps_them(bounds: object) -> None:
    fields = json.loads(records.exemplar_key(_series()))
    fields[6] = bounds
    key = json.dumps(fields, separators=(",", ":"))
    with pytest.raises(ValueError, match="unknown kind"):
        check_key(key, (0.0,) * records.SLOT * 3)


def test_the_slot_count_follows_the_series() -> None:
    """One per bucket (bounds + 1), one for a counter, min(20, max_size)."""
    key = records.exemplar_key(_series())
    assert check_key(key, (0.0,) * records.SLOT * 3) == records.KIND
    with pytest.raises(ValueError, match="holds"):
        check_key(key, (0.0,) * records.SLOT * 2)
    assert records.slots_of("counter", None) == 1
    assert records.slots_of("exponential", [160, 20]) == 20
    assert records.slots_of("exponential", [8, 20]) == 8
    assert records.slots_of("gauge", None) is None
    assert records.slots_of("updown", None) == 1
    assert records.slots_of("exponential", [2, 20]) == 2
    for shape in (8, [], [1, 20], [True, 20], [8.0, 20]):
        assert records.slots_of("exponential", shape) is None
    assert records.possible(records.encode(1.0, (2**40 - 1) * 10**9, None))


@pytest.mark.parametrize(
    ("key_bounds", "values"),
    [
        (None, [math.inf] * records.SLOT),
        (None, [math.nan] * records.SLOT),
        (None, [1.0] * (records.SLOT + 1)),
        ([["x"]], [0.0] * records.SLOT),
        ("not a list", [0.0] * records.SLOT),
    ],
)
def test_a_forged_exemplar_record_the_guard_never_saw_is_left_out(
    key_bounds: object, values: list[float]
) -> None:
    """An archive never holds exemplar records, and is not read through the member
    guard: one forged there is left out of the scrape, the series still served."""
    from opentelemetry.sdk.resources import Resource

    from ron_metrics.multiprocess.data import GroupData
    from ron_metrics.multiprocess.merge import Merged

    series = _series("counter", None)
    fields = json.loads(records.exemplar_key(series))
    if key_bounds is not None:
        fields[6] = key_bounds
    forged = json.dumps(fields, separators=(",", ":"))
    merged = {series: Merged("counter", [3.0]), forged: Merged(records.KIND, values)}
    data = GroupData(Resource({}), 0).build(merged)
    (metric,) = data.resource_metrics[0].scope_metrics[0].metrics
    (point,) = metric.data.data_points
    assert isinstance(point, NumberDataPoint)
    assert (point.value, tuple(point.exemplars)) == (3, ())
