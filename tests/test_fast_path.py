"""
The fast path against the SDK path: random workloads through both, the collected
data points compared exactly; then threads, bound handles, forks and the switch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ron_metrics
from conftest import run_python
from ron_metrics.fast.instruments import FastCounter
from ron_metrics.testing import config_for_tests

KEYS = ("a", "b", "c")
# 1, 1.0 and True are equal in Python but different series in OpenTelemetry.
VALUES = ("x", "y", 1, 1.0, True, 0, False, 2.5, ("p", "q"))
INSTRUMENTS = ("counter", "updown", "histogram", "seconds", "gauge")


@contextmanager
def runtime(fast: bool, cardinality: dict[str, Any]) -> Iterator[ron_metrics.Runtime]:
    # The process's own families differ from run to run: not what is compared.
    config = config_for_tests(
        cardinality=cardinality,
        sdk={"fast_path": fast},
        runtime_metrics={"enabled": False},
    )
    started = ron_metrics.start(config, set_global=False)
    try:
        yield started
    finally:
        started.shutdown()


def _instruments(meter: Any) -> dict[str, Any]:
    return {
        "counter": meter.create_counter("jobs", description="Jobs."),
        "updown": meter.create_up_down_counter("queue.depth"),
        "histogram": meter.create_histogram(
            "payload", unit="By", explicit_bucket_boundaries_advisory=[10, 100]
        ),
        "seconds": meter.create_histogram("work.duration", unit="s"),
        "gauge": meter.create_gauge("temperature"),
    }


def _apply(instrument: Any, kind: str, value: float, attributes: Any) -> None:
    if kind in {"counter", "updown"}:
        instrument.add(value, attributes)
    elif kind == "gauge":
        instrument.set(value, attributes)
    else:
        instrument.record(value, attributes)


def _typed(attributes: Any) -> tuple[Any, ...]:
    return tuple(sorted((k, type(v).__name__, repr(v)) for k, v in attributes.items()))


def collected(started: ron_metrics.Runtime) -> dict[tuple[str, str], Any]:
    """Every data point of one collection, independent of order and timestamps."""
    data = started._hub.capture()
    assert data is not None
    out: dict[tuple[str, str], Any] = {}
    for scope in data.resource_metrics[0].scope_metrics:
        for metric in scope.metrics:
            if metric.name.endswith("exposition_latency"):
                continue
            points = {}
            for point in metric.data.data_points:
                found: Any = point
                shape: Any
                if hasattr(found, "scale"):
                    shape = exponential_shape(found)
                elif hasattr(found, "bucket_counts"):
                    shape = (
                        found.count,
                        found.sum,
                        tuple(found.bucket_counts),
                        tuple(found.explicit_bounds),
                        found.min,
                        found.max,
                    )
                else:
                    shape = found.value
                series = _typed(found.attributes)
                assert series not in points, f"two points of {metric.name}: {series}"
                points[series] = shape
            kind = type(metric.data).__name__
            monotonic = getattr(metric.data, "is_monotonic", None)
            identity = (metric.description, metric.unit, kind, monotonic)
            out[(scope.scope.name, metric.name)] = (identity, points)
    return out


def _dense(buckets: Any) -> tuple[int, tuple[int, ...]] | None:
    # Buckets without the empty ones at either end (the SDK keeps its allocated
    # capacity as trailing zeros; the content is what is compared).
    counts = list(buckets.bucket_counts)
    offset = buckets.offset
    while counts and counts[-1] == 0:
        counts.pop()
    while counts and counts[0] == 0:
        counts.pop(0)
        offset += 1
    return (offset, tuple(counts)) if counts else None


def exponential_shape(point: Any) -> tuple[Any, ...]:
    """An exponential point's scale, counts, sum, min, max and buckets."""
    return (
        point.count,
        point.sum,
        point.scale,
        point.zero_count,
        _dense(point.positive),
        _dense(point.negative),
        point.min,
        point.max,
    )


# Plus, sometimes, an attribute the allowlists drop, different on nearly every call.
attribute_sets = st.builds(
    lambda kept, dropped: {**kept, **dropped},
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3),
    st.dictionaries(
        st.just("user.id"), st.one_of(st.integers(), st.text(max_size=4)), max_size=1
    ),
)
operations = st.lists(
    st.tuples(
        st.sampled_from(INSTRUMENTS),
        st.one_of(
            st.integers(min_value=-3, max_value=50),
            st.floats(min_value=-1, max_value=200),
            st.sampled_from([float("nan"), float("inf"), -float("inf")]),
        ),
        st.one_of(st.none(), attribute_sets),
    ),
    max_size=60,
)
cardinalities = st.fixed_dictionaries(
    {
        "max_series": st.integers(min_value=1, max_value=6),
    },
    optional={
        "default_attributes": st.lists(st.sampled_from(KEYS), unique=True),
        "instruments": st.sampled_from(
            [
                {},
                {"jobs": {"attributes": ["a"], "max_series": 2}},
                {"jobs": {"attributes": ["a", "b"]}, "payload": {"attributes": ["c"]}},
                {"payload": {"buckets": [1.0, 5.0, 50.0]}},
                {"payload": {"aggregation": "exponential", "max_size": 4}},
                {"work.*": {"aggregation": "exponential", "max_scale": 2}},
                {"temperature": {"drop": True}},
                {"work.*": {"max_series": 1}},
            ]
        ),
    },
)


@settings(max_examples=60, deadline=None)
@given(operations=operations, cardinality=cardinalities)
def test_fast_path_collects_what_the_sdk_path_collects(
    operations: list[tuple[str, float, Any]], cardinality: dict[str, Any]
) -> None:
    """Values, counts, sums, min/max, buckets, attributes and overflow series: all equal."""
    results = []
    for fast in (True, False):
        with runtime(fast, cardinality) as started:
            instruments = _instruments(started.get_meter("app"))
            for kind, value, attributes in operations:
                _apply(instruments[kind], kind, value, attributes)
            results.append(collected(started))
    assert results[0] == results[1]


@settings(max_examples=25, deadline=None)
@given(
    sets=st.lists(
        st.fixed_dictionaries(
            {"a": st.integers(0, 400), "b": st.sampled_from([200, "200", 200.0, True])},
            optional={"user.id": st.integers()},
        ),
        min_size=50,
        max_size=400,
    ),
    allowlist=st.sampled_from([None, ["a", "b"], ["b"]]),
)
def test_long_overflow_runs_match_the_sdk(
    sets: list[dict[str, Any]], allowlist: list[str] | None
) -> None:
    """Hundreds of sets past a limit of 5, typed values, varying dropped keys."""
    cardinality: dict[str, Any] = {"max_series": 5}
    if allowlist is not None:
        cardinality["default_attributes"] = allowlist
    results = []
    for fast in (True, False):
        with runtime(fast, cardinality) as started:
            instruments = _instruments(started.get_meter("app"))
            for attributes in sets:
                instruments["counter"].add(1, attributes)
                instruments["histogram"].record(3, attributes)
            results.append(collected(started))
    assert results[0] == results[1]


def test_a_caller_spelled_overflow_set_is_the_overflow_series() -> None:
    """``{"otel.metric.overflow": True}`` passed by the caller before the limit and
    the sets past it make one series on both paths, never two with one label set."""
    results = []
    for fast in (True, False):
        with runtime(fast, {"max_series": 2}) as started:
            instruments = _instruments(started.get_meter("app"))
            for attributes in (
                {"otel.metric.overflow": True},
                {"a": "x"},
                {"a": "y"},
                {"a": "z"},
            ):
                instruments["counter"].add(2, attributes)
                instruments["histogram"].record(3, attributes)
            results.append(collected(started))
    assert results[0] == results[1]
    overflow = (("otel.metric.overflow", "bool", "True"),)
    assert results[0][("app", "jobs")][1][overflow] == 6


def test_fast_instruments_are_used_and_can_be_switched_off() -> None:
    """On by default; sdk.fast_path = false gives the SDK's own instruments."""
    with runtime(True, {}) as fast, runtime(False, {}) as sdk:
        assert isinstance(fast.get_meter("m").create_counter("c"), FastCounter)
        assert not isinstance(sdk.get_meter("m").create_counter("c"), FastCounter)
        meter = fast.get_meter("m")
        assert meter.create_counter("c") is meter.create_counter("c")


def test_exact_totals_under_eight_threads() -> None:
    """8 threads x 20k operations: every add and record counted, none twice."""
    with runtime(True, {}) as started:
        instruments = _instruments(started.get_meter("app"))
        counter, histogram = instruments["counter"], instruments["histogram"]
        bound = ron_metrics.bind(counter, {"a": "bound"})

        def work(index: int) -> None:
            for step in range(20_000):
                counter.add(1, {"a": str(index % 2)})
                histogram.record(step % 200, {"a": "h"})
                bound.add(2)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        points = collected(started)
        jobs = points[("app", "jobs")][1]
        assert jobs[_typed({"a": "0"})] + jobs[_typed({"a": "1"})] == 160_000
        assert jobs[_typed({"a": "bound"})] == 320_000
        assert points[("app", "payload")][1][_typed({"a": "h"})][0] == 160_000


class TestBind:
    def test_bound_handles_add_to_the_same_series(self) -> None:
        """A handle and the instrument with the same attributes share one series."""
        with runtime(True, {}) as started:
            instruments = _instruments(started.get_meter("app"))
            handle = ron_metrics.bind(instruments["counter"], {"a": "x", "b": 1})
            handle.add(5)
            instruments["counter"].add(2, {"b": 1, "a": "x"})
            timing = ron_metrics.bind(instruments["seconds"], {"a": "x"})
            timing.record(0.2)
            handle.add(-1)  # a counter never goes down: dropped, as by the instrument
            points = collected(started)
            assert points[("app", "jobs")][1] == {_typed({"a": "x", "b": 1}): 7}
            assert points[("app", "work.duration")][1][_typed({"a": "x"})][0] == 1

    def test_bound_handles_respect_limits(self) -> None:
        """A handle past the cardinality limit lands in the overflow series."""
        with runtime(True, {"max_series": 1}) as started:
            counter = _instruments(started.get_meter("app"))["counter"]
            counter.add(1, {"a": "first"})
            ron_metrics.bind(counter, {"a": "second"}).add(3)
            series = collected(started)[("app", "jobs")][1]
            assert series[_typed({"otel.metric.overflow": True})] == 3

    def test_other_instruments_get_a_handle_too(self) -> None:
        """With the fast path off the handle calls the instrument."""
        with runtime(False, {}) as started:
            counter = _instruments(started.get_meter("app"))["counter"]
            ron_metrics.bind(counter, {"a": "x"}).add(4)
            assert collected(started)[("app", "jobs")][1] == {_typed({"a": "x"}): 4}


def test_forked_child_counts_from_zero_and_handles_survive() -> None:
    """After fork() the child's series start at zero; a handle bound before still counts."""
    code = (
        "import os\n"
        "import ron_metrics\n"
        "from ron_metrics.testing import config_for_tests, sample_value\n"
        "rt = ron_metrics.start(config_for_tests(), set_global=False)\n"
        "counter = rt.get_meter('app').create_counter('jobs')\n"
        "handle = ron_metrics.bind(counter, {'q': 'h'})\n"
        "counter.add(5, {'q': 'x'}); handle.add(1)\n"
        "read, write = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    counter.add(2, {'q': 'x'}); handle.add(3)\n"
        "    got = (sample_value(rt, 'jobs_total', q='x'), sample_value(rt, 'jobs_total', q='h'))\n"
        "    os.write(write, repr(got).encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.read(read, 100).decode(), sample_value(rt, 'jobs_total', q='x'))\n"
        "rt.shutdown()\n"
    )
    assert run_python(code).split() == ["(2,", "3)", "5"]


@pytest.mark.parametrize("fast", [True, False])
def test_invalid_values_are_dropped_on_both_paths(fast: bool) -> None:
    """NaN, infinity and negative counter amounts are ignored, never counted."""
    with runtime(fast, {}) as started:
        instruments = _instruments(started.get_meter("app"))
        for bad in (float("nan"), float("inf"), -1):
            instruments["counter"].add(bad)
            instruments["histogram"].record(bad)
        instruments["counter"].add(1)
        points = collected(started)
        assert points[("app", "jobs")][1] == {(): 1}
        assert ("app", "payload") not in points


class _Keep(logging.Handler):
    """Every record's logger, level and message."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def _warnings_of_bad_values() -> list[list[tuple[str, int, str]]]:
    seen: list[list[tuple[str, int, str]]] = []
    for fast in (True, False):
        handler = _Keep()
        with runtime(fast, {}) as started:
            instruments = _instruments(started.get_meter("app"))
            logging.getLogger().addHandler(handler)
            try:
                instruments["counter"].add(-1)
                instruments["counter"].add(float("nan"))
                instruments["updown"].add(float("inf"))
                instruments["histogram"].record(-2, {"a": "x"})
                instruments["histogram"].record(float("nan"))
                instruments["gauge"].set(float("-inf"))
            finally:
                logging.getLogger().removeHandler(handler)
        seen.append([r for r in handler.records if "amount" in r[2]])
    return seen


def test_dropped_values_are_reported_as_the_sdk_reports_them() -> None:
    """The same warning, word for word, from the same logger, on both paths."""
    fast, sdk = _warnings_of_bad_values()
    assert len(sdk) == 6
    assert fast == sdk


@pytest.mark.parametrize("fast", [True, False])
def test_dropped_instruments_take_every_call(fast: bool) -> None:
    """An instrument a rule drops feeds no stream: every call shape is accepted
    and nothing is collected."""
    rules = {name: {"drop": True} for name in ("jobs", "payload", "temperature")}
    with runtime(fast, {"instruments": rules}) as started:
        instruments = _instruments(started.get_meter("app"))
        for attributes in (None, {}, {"a": "x"}, {"a": 200, "b": "y"}):
            _apply(instruments["counter"], "counter", 1, attributes)
            _apply(instruments["histogram"], "histogram", 1, attributes)
            _apply(instruments["gauge"], "gauge", 1, attributes)
        _apply(instruments["updown"], "updown", 1, None)
        points = collected(started)
        assert ("app", "queue.depth") in points
        assert not {("app", "jobs"), ("app", "payload"), ("app", "temperature")} & set(
            points
        )


@pytest.mark.parametrize("fast", [True, False])
def test_invalid_values_are_dropped_by_bound_handles(fast: bool) -> None:
    """Bound handles drop what their instrument drops: NaN, ±infinity, negatives."""
    with runtime(fast, {}) as started:
        instruments = _instruments(started.get_meter("app"))
        counter = ron_metrics.bind(instruments["counter"], {"q": "a"})
        updown = ron_metrics.bind(instruments["updown"], {"q": "a"})
        histogram = ron_metrics.bind(instruments["histogram"], {"q": "a"})
        for bad in (float("nan"), float("inf"), -float("inf")):
            counter.add(bad)
            updown.add(bad)
            histogram.record(bad)
        counter.add(-1)
        histogram.record(-1)
        counter.add(2)
        updown.add(-3)
        histogram.record(4)
        points = collected(started)
        assert points[("app", "jobs")][1] == {(("q", "str", "'a'"),): 2}
        assert points[("app", "queue.depth")][1] == {(("q", "str", "'a'"),): -3}
        assert ("app", "payload") in points


class TestStreamInternals:
    """The stream's bookkeeping, checked directly (the results above cannot see it)."""

    def stream(
        self, kind: str = "sum", limit: int = 10, keys: frozenset[str] | None = None
    ) -> Any:
        from ron_metrics.fast.stream import Stream

        bounds = (1.0, 5.0) if kind == "histogram" else ()
        return Stream(
            name="s",
            description="d",
            unit="",
            kind=kind,
            monotonic=True,
            attribute_keys=keys,
            limit=limit,
            bounds=bounds,
        )

    @staticmethod
    def refuse_resolving(stream: Any) -> None:
        def refuse(*_args: Any) -> Any:
            raise AssertionError("resolved again")

        stream._resolve = refuse
        stream._resolve_keyed = refuse

    def test_series_keys(self) -> None:
        """String sets key by their sorted pairs, other plain values with their
        types, anything else by the SDK's typed key; the shapes never meet."""
        from opentelemetry.sdk.metrics._internal._view_instrument_match import (
            _hash_attributes,
        )

        from ron_metrics.fast.cells import series_key as _series_key

        assert _series_key({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))
        assert _series_key({"n": 1, "a": "x"}) == (
            "typed",
            (("a", str, "x"), ("n", int, 1)),
        )
        assert _series_key({"n": 1}) != _series_key({"n": True})
        assert _series_key({"n": 1}) != _series_key({"n": 1.0})
        assert _series_key({"s": ("p", 1)}) == _hash_attributes({"s": ("p", 1)})

    def test_seen_sets_are_remembered_by_their_spelling(self) -> None:
        """A resolved set is found again in one lookup, typed sets with their types."""
        from ron_metrics.fast.cells import Typed

        stream = self.stream()
        text = stream.cell({"a": "x"})
        number = stream.cell({"n": 1})
        stream.cell({"seq": ["p", 1]})  # sequences are never remembered
        assert stream.aliases == {
            (("a", "x"),): text,
            (("n", 1),): Typed({(int,): number}),
        }
        assert stream.cell({"n": True}) is not number
        assert stream.cell({"n": 1.0}) is not number
        assert stream.cell({"n": 1}) is number
        assert stream.cell({"a": "x"}) is text

    def test_remembered_sets_are_bounded_and_never_wiped(self) -> None:
        """Past a few spellings per series nothing more is kept; nothing is dropped."""
        stream = self.stream(limit=3, keys=frozenset({"a", "b"}))
        # "b" absent: the caller's spelling is remembered, and it varies.
        first = stream.cell({"a": "x", "user.id": "u0"})
        for index in range(1, 200):
            assert stream.cell({"a": "x", "user.id": f"u{index}"}) is first
        assert len(stream.aliases) == 4 * 4
        assert stream.aliases[(("a", "x"), ("user.id", "u0"))] is first

    def test_points_carry_times_bounds_and_no_exemplars(self) -> None:
        """Start ≤ collection time; histogram bounds, min/max; empty exemplars."""
        import time

        stream = self.stream("histogram")
        from ron_metrics.fast.instruments import observe

        cell = stream.cell({"a": "x"})
        for value in (0.5, 3.0, 9.0):
            observe(cell, value)
        now = time.time_ns()
        metric = stream.collect(now)
        assert metric is not None
        (point,) = metric.data.data_points
        assert 0 < point.start_time_unix_nano <= now == point.time_unix_nano
        assert (point.count, point.sum, point.min, point.max) == (3, 12.5, 0.5, 9.0)
        assert tuple(point.bucket_counts) == (1, 1, 1)
        assert tuple(point.explicit_bounds) == (1.0, 5.0)
        assert list(point.exemplars) == []

    def test_reset_starts_every_cell_again(self) -> None:
        """After reset (a forked child) cells are zero, with new locks and start times."""
        sums, histograms = self.stream(), self.stream("histogram")
        cell, histogram_cell = sums.cell({"a": "x"}), histograms.cell({"a": "x"})
        cell.value = 7
        histogram_cell.counts[0] = 3
        before = (cell.lock, cell.start, histogram_cell.lock)
        sums.reset()
        histograms.reset()
        assert cell.value == 0
        assert histogram_cell.counts == [0, 0, 0]
        assert (histogram_cell.low, histogram_cell.high) == (
            float("inf"),
            float("-inf"),
        )
        assert cell.lock is not before[0] and histogram_cell.lock is not before[2]
        assert cell.start >= before[1]
        assert sums.collect(1) is not None

    def test_empty_stream_collects_nothing(self) -> None:
        """No measurement yet: no metric (as the SDK)."""
        assert self.stream().collect(1) is None

    def test_remembered_sets_skip_the_long_way(self) -> None:
        """After the first resolve, a known spelling never resolves again."""
        stream = self.stream()
        text, number = stream.cell({"a": "x"}), stream.cell({"n": 1})
        self.refuse_resolving(stream)
        assert stream.cell({"a": "x"}) is text
        assert stream.cell({"n": 1}) is number
        key = next(iter(stream._cells))
        assert next(iter(stream.aliases)) is key  # one tuple for both maps

    def test_kept_values_find_the_series_whatever_else_is_passed(self) -> None:
        """With an allowlist, the kept values find the series: a dropped attribute
        that varies, another key order, a new dict — no resolve after the first."""
        stream = self.stream(keys=frozenset({"code", "route"}))
        first = stream.cell({"route": "/a", "code": 200, "user.id": "u0"})
        as_text = stream.cell({"route": "/a", "code": "200"})
        as_bool = stream.cell({"route": "/a", "code": True})
        assert len({id(first), id(as_text), id(as_bool)}) == 3
        self.refuse_resolving(stream)
        for index in range(100):
            assert (
                stream.cell({"code": 200, "route": "/a", "user.id": f"u{index}"})
                is first
            )
            assert stream.cell({"route": "/a", "code": "200", "n": index}) is as_text
        assert first.attributes == {"code": 200, "route": "/a"}

    @pytest.mark.parametrize(
        "keys", [None, frozenset({"a", "n"})], ids=["all", "allowlist"]
    )
    def test_past_the_limit_new_sets_go_to_overflow_without_resolving(
        self, keys: frozenset[str] | None
    ) -> None:
        """At the limit a plain new set lands in the overflow series directly, and
        a known series in a new spelling is still found; nothing is remembered."""
        stream = self.stream(limit=2, keys=keys)
        one = stream.cell({"a": "x", "n": 1})
        two = stream.cell({"a": "y", "n": 1})
        overflow = stream.cell({"a": "z", "n": 1})
        assert overflow.attributes == {"otel.metric.overflow": True}
        remembered = len(stream.aliases) + len(stream.kept)
        self.refuse_resolving(stream)
        for index in range(200):
            assert stream.cell({"a": f"new{index}", "n": index}) is overflow
        assert stream.cell({"n": 1, "a": "x"}) is one  # another key order
        assert stream.cell({"a": "y", "n": 1}) is two
        assert len(stream.aliases) + len(stream.kept) <= remembered + 1

    def test_sequences_of_equal_but_different_values_stay_apart(self) -> None:
        """("p", 1) and ("p", True) are two series; unhashable lists are cleaned."""
        stream = self.stream()
        first = stream.cell({"s": ("p", 1)})
        assert stream.cell({"s": ("p", True)}) is not first
        assert stream.cell({"s": ("p", 1)}) is first
        listed = stream.cell({"s": ["q", 2]})
        assert listed.attributes == {"s": ("q", 2)}

    @pytest.mark.parametrize(
        ("keys", "existing", "call"),
        [
            (None, {"a": "x"}, {"a": "x", "": "v"}),  # an empty key is cleaned away
            (None, {"5": "v"}, {5: "v"}),  # a non-string key is cleaned to text
            (frozenset({"a", "n"}), {"a": "x"}, {"a": "x", "u": "1"}),  # "n" absent
            (frozenset({"a"}), {"a": 1}, {"a": 1, "u": "1"}),  # one allowlisted key
        ],
        ids=["empty-key", "int-key", "allowlist-missing-key", "one-key"],
    )
    def test_past_the_limit_an_existing_series_is_still_found(
        self,
        keys: frozenset[str] | None,
        existing: dict[Any, Any],
        call: dict[Any, Any],
    ) -> None:
        """At the limit, a call that cleans or filters down to an existing series
        lands in it, however it was spelled — never in the overflow series."""
        stream = self.stream(limit=2, keys=keys)
        found = stream.cell(existing)
        stream.cell({"a": "other", "n": 2, "5": "w"})
        assert stream.cell({"a": "third", "n": 3, "5": "z"}).attributes == {
            "otel.metric.overflow": True
        }
        assert stream.cell(call) is found
        assert stream.cell({"a": 2.5}) is not found

    @pytest.mark.parametrize(
        "keys", [None, frozenset({"s", "i", "f", "b"})], ids=["all", "allowlist"]
    )
    def test_every_plain_value_type_at_once_takes_the_short_ways(
        self, keys: frozenset[str] | None
    ) -> None:
        """A set holding a str, an int, a float and a bool is as plain as any: found
        again without resolving, and past the limit sent to overflow directly."""
        stream = self.stream(limit=1, keys=keys)
        first = stream.cell({"s": "x", "i": 1, "f": 1.5, "b": True})
        overflow = stream.cell({"s": "y", "i": 1, "f": 1.5, "b": True})
        self.refuse_resolving(stream)
        assert stream.cell({"s": "x", "i": 1, "f": 1.5, "b": True}) is first
        assert stream.cell({"b": True, "f": 1.5, "i": 1, "s": "x"}) is first
        for index in range(20):
            mixed = {"s": f"n{index}", "i": index, "f": 0.5, "b": False}
            assert stream.cell(mixed) is overflow

    def test_past_the_limit_a_sequence_valued_series_is_still_found(self) -> None:
        """A series whose kept value is a sequence is not remembered by its values,
        so at the limit it is looked up the long way — never sent to overflow."""
        stream = self.stream(limit=2, keys=frozenset({"a"}))
        sequence = stream.cell({"a": ("x", "y")})
        stream.cell({"a": "p"})
        assert stream.cell({"a": "q"}).attributes == {"otel.metric.overflow": True}
        assert stream.cell({"a": ("x", "y"), "u": "1"}) is sequence

    def test_a_set_spelled_as_the_overflow_series_shares_its_cell(self) -> None:
        """A caller's own ``otel.metric.overflow`` set, made before the limit, is the
        overflow series later (as in the SDK): one cell, nothing lost."""
        stream = self.stream(limit=2)
        spelled = stream.cell({"otel.metric.overflow": True})
        spelled.value = 5
        stream.cell({"a": "x"})
        overflow = stream.cell({"a": "new"})
        assert overflow is spelled
        assert overflow.value == 5

    def test_one_number_among_strings_is_checked_by_its_type_alone(self) -> None:
        """A number among string values is remembered with its one type; 1.0 and
        True (equal to 1 in Python) are other series, after which the three are
        told apart by their types — each found again without resolving."""
        from ron_metrics.fast.cells import OneTyped, Typed

        stream = self.stream(keys=frozenset({"method", "code"}))
        as_int = stream.cell({"method": "GET", "code": 1})
        remembered = stream.kept[(1, "GET")]
        assert isinstance(remembered, OneTyped)
        self.refuse_resolving(stream)
        assert stream.cell({"code": 1, "method": "GET", "u": "1"}) is as_int
        del stream._resolve, stream._resolve_keyed  # the long way again
        as_float = stream.cell({"method": "GET", "code": 1.0})
        as_bool = stream.cell({"method": "GET", "code": True})
        assert len({id(as_int), id(as_float), id(as_bool)}) == 3
        grown = stream.kept[(1, "GET")]
        assert isinstance(grown, Typed)
        self.refuse_resolving(stream)
        assert stream.cell({"method": "GET", "code": 1}) is as_int
        assert stream.cell({"method": "GET", "code": 1.0}) is as_float
        assert stream.cell({"method": "GET", "code": True}) is as_bool

    def test_typed_spellings_are_bounded_too(self) -> None:
        """Number-valued spellings past the limit are not remembered either."""
        stream = self.stream(limit=1)
        for index in range(50):
            stream.cell({"n": index})
        assert len(stream.aliases) <= 4 * 2

    def test_sum_and_gauge_points(self) -> None:
        """Cumulative sums with their monotonicity; gauges as gauges; full points."""
        import time

        from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Sum

        sums = self.stream()
        sums.cell({"a": "x"}).value = 3
        now = time.time_ns()
        metric = sums.collect(now)
        assert metric is not None
        assert isinstance(metric.data, Sum)
        assert metric.data.is_monotonic
        assert metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
        assert (metric.name, metric.description, metric.unit) == ("s", "d", "")
        (point,) = metric.data.data_points
        assert (point.value, point.time_unix_nano, list(point.exemplars)) == (
            3,
            now,
            [],
        )
        assert 0 < point.start_time_unix_nano <= now
        gauges = self.stream("gauge")
        gauges.cell(None).value = 1.5
        gauge = gauges.collect(now)
        assert gauge is not None and isinstance(gauge.data, Gauge)
        histograms = self.stream("histogram")
        histograms.cell(None)
        found = histograms.collect(now)
        assert found is not None
        assert found.data.aggregation_temporality is AggregationTemporality.CUMULATIVE


def test_group_members_write_fast_cells_through(tmp_path: Any) -> None:
    """In a [multiprocess] group every fast update also lands in the process's store."""
    from ron_metrics.multiprocess.store import parse_records

    config = config_for_tests(multiprocess={"dir": str(tmp_path / "group")})
    with ron_metrics.start(config, set_global=False) as started:
        instruments = _instruments(started.get_meter("app"))
        instruments["counter"].add(2, {"a": "x"})
        ron_metrics.bind(instruments["counter"], {"a": "x"}).add(3)
        instruments["updown"].add(-4)
        instruments["histogram"].record(50, {"a": "x"})
        instruments["gauge"].set(7.5)
        (member,) = (tmp_path / "group").glob("member-*.db")
        stored = {
            key.split(",")[2].strip('"'): values
            for key, values in parse_records(member.read_bytes())
        }
    assert stored["jobs"] == (5.0,)
    assert stored["queue.depth"] == (-4.0,)
    assert stored["payload"] == (50.0, 50.0, 50.0, 0.0, 1.0, 0.0)
    assert stored["temperature"][0] == 7.5
