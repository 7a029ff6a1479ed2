"""
The direct encoder against the reference path (opentelemetry-exporter-prometheus +
prometheus_client), on random collections: the same exposition, byte for byte, in
both formats — and so the same samples.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.prometheus import _CustomCollector
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ron_metrics.exporters.prometheus.encode import DirectEncoder
from ron_metrics.exporters.prometheus.render import Format, encode
from ron_metrics.hub import _fill_descriptions, without_name_clashes
from ron_metrics.testing import config_for_tests, runtime_for_tests

NAMES = st.sampled_from(
    [
        "jobs",
        "jobs_total",
        "http.server.request.duration",
        "queue-depth",
        "Mixed.Case/slash",
        "rejected",
        "target_info",
        "latency",
    ]
)
UNITS = st.sampled_from(["", "s", "ms", "By", "1", "%", "{request}", "m/s", "Cel"])
DESCRIPTIONS = st.sampled_from(
    ["", "Plain.", 'Quoted "text"', "Back\\slash", "New\nline", "Ünïcödé ✓"]
)
TEXT = st.text(
    alphabet=st.sampled_from(
        ["a", "Z", "0", " ", '"', "\\", "\n", "é", "✓", "{", "}", "="]
    ),
    max_size=6,
)
ATTRIBUTE_VALUES = st.one_of(
    TEXT,
    st.integers(-5, 5),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.lists(st.integers(0, 3), max_size=2),
)
ATTRIBUTES = st.dictionaries(
    st.sampled_from(["route", "k.v", "le", "9x", "code", "ü"]),
    ATTRIBUTE_VALUES,
    max_size=3,
)
GAUGE_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**12), 10**12)
)


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["counter", "updown", "histogram", "gauge"]))
        value: float
        if kind == "counter":
            value = draw(st.floats(0, 1e9, allow_nan=False))
        elif kind == "histogram":
            value = draw(st.floats(0, 1e4, allow_nan=False))
        elif kind == "gauge":
            value = draw(GAUGE_VALUES)
        else:
            value = draw(st.floats(-1e6, 1e6, allow_nan=False))
        steps.append(
            (
                draw(st.sampled_from(["app", "lib"])),
                kind,
                draw(NAMES),
                draw(UNITS),
                draw(DESCRIPTIONS),
                draw(ATTRIBUTES),
                value,
            )
        )
    return steps


def collect(
    steps: list[tuple[Any, ...]], exemplars: str = "trace_based"
) -> MetricsData:
    config = config_for_tests(
        cardinality={"max_series": 4}, sdk={"exemplar_filter": exemplars}
    )
    with runtime_for_tests(config) as runtime:
        made: dict[tuple[str, str, str, str, str], Any] = {}
        for meter, kind, name, unit, description, attributes, value in steps:
            key = (meter, kind, name, unit, description)
            if key not in made:
                create = {
                    "counter": "create_counter",
                    "updown": "create_up_down_counter",
                    "histogram": "create_histogram",
                    "gauge": "create_gauge",
                }[kind]
                made[key] = getattr(runtime.get_meter(meter), create)(
                    name, unit=unit, description=description
                )
            instrument = made[key]
            if kind == "histogram":
                instrument.record(value, attributes)
            elif kind == "gauge":
                instrument.set(value, attributes)
            else:
                instrument.add(value, attributes)
        data = runtime._hub.capture()
        assert data is not None
        return data


def reference(data: MetricsData, fmt: Format, *, target: bool, scope: bool) -> bytes:
    collector = _CustomCollector(
        disable_target_info=not target, scope_info_enabled=scope
    )
    collector.add_metrics_data(_fill_descriptions(data))
    return encode(without_name_clashes(list(collector.collect()), lambda _n: None), fmt)


@settings(max_examples=60, deadline=None)
@given(workloads(), st.booleans(), st.booleans())
def test_direct_encoder_writes_what_the_reference_writes(
    steps: list[tuple[Any, ...]], target: bool, scope: bool
) -> None:
    """Random instruments, names, units, attributes and values: identical output."""
    data = collect(steps)
    encoder = DirectEncoder(target_info=target, scope_labels=scope)
    for fmt in (Format.TEXT, Format.OPENMETRICS):
        ours = encoder.encode(data, fmt)
        assert ours == reference(data, fmt, target=target, scope=scope)
        # Encoded twice: the cached label blocks give the same bytes.
        assert encoder.encode(data, fmt) == ours


def samples(body: str, fmt: Format) -> list[tuple[str, tuple[Any, ...], object]]:
    parse = parse_openmetrics if fmt is Format.OPENMETRICS else parse_text
    found: list[tuple[str, tuple[Any, ...], object]] = []
    for family in parse(body):
        for sample in family.samples:
            value = "nan" if math.isnan(sample.value) else sample.value
            found.append((sample.name, tuple(sorted(sample.labels.items())), value))
    return found


def test_fixed_workload_parses_to_the_same_samples() -> None:
    """A workload with every kind and awkward text parses to the reference's samples."""
    steps: list[tuple[Any, ...]] = [
        ("app", "counter", "jobs", "1", 'Quoted "text"', {"route": 'a"b\\c\nd'}, 3.0),
        ("app", "histogram", "latency", "s", "", {"code": 5}, 0.3),
        ("app", "gauge", "temp", "Cel", "New\nline", {}, float("nan")),
        ("lib", "gauge", "temp", "Cel", "New\nline", {"k.v": True}, float("inf")),
        ("app", "updown", "queue-depth", "{request}", "", {}, -4.0),
        ("lib", "counter", "rejected", "", "", {}, 1.0),
    ]
    data = collect(steps)
    for fmt in (Format.TEXT, Format.OPENMETRICS):
        ours = DirectEncoder().encode(data, fmt).decode()
        theirs = reference(data, fmt, target=True, scope=False).decode()
        assert samples(ours, fmt) == samples(theirs, fmt)


_EXEMPLAR = re.compile(r" # \{[^}]*\} \S+ \S+$")


@settings(max_examples=40, deadline=None)
@given(workloads())
def test_exemplars_only_add_to_the_reference_exposition(
    steps: list[tuple[Any, ...]],
) -> None:
    """Every measurement kept (always_on): the OpenMetrics exposition without its
    exemplars is the reference's byte for byte; prometheus_client's OpenMetrics
    parser reads every exemplar, on a counter sample or the bucket its value is in."""
    data = collect(steps, exemplars="always_on")
    ours = DirectEncoder().encode(data, Format.OPENMETRICS).decode()
    stripped = "\n".join(_EXEMPLAR.sub("", line) for line in ours.split("\n"))
    reference_body = reference(data, Format.OPENMETRICS, target=True, scope=False)
    assert stripped.encode() == reference_body
    assert DirectEncoder().encode(data, Format.TEXT) == reference(
        data, Format.TEXT, target=True, scope=False
    )
    try:
        list(parse_openmetrics(reference_body.decode()))  # type: ignore[no-untyped-call]  # untyped upstream
    except ValueError:
        return  # the reference's own exposition is not valid OpenMetrics here
    marked = 0
    for family in parse_openmetrics(ours):  # type: ignore[no-untyped-call]  # untyped upstream
        previous = -math.inf
        for sample in family.samples:
            is_bucket = sample.name.endswith("_bucket")
            bound = float(sample.labels["le"]) if is_bucket else math.nan
            if sample.exemplar is not None:
                marked += 1
                assert sample.name.endswith(("_total", "_bucket")), sample
                if is_bucket:
                    assert previous < sample.exemplar.value <= bound, sample
            previous = bound if is_bucket else -math.inf
    # Every exemplar written is one the parser read.
    assert marked == ours.count(" # {")
