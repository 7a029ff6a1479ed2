"""
Every call shape services write, measured interleaved in one run.

The shapes: 1, 3 or 5 attributes; the same dict object every call or a new dict
literal per call; all string values or an int ``http.response.status_code``; and,
at 3 attributes with a new dict and an int status code (the shape the semantic
conventions and most middleware write), three harder variants: a ``user.id`` the
allowlist drops that differs on every call, 100 rotating attribute sets, and 1,000
rotating sets past a cardinality limit of 100 (overflow). Counters and histograms.

The candidates do the same work: ron-metrics' instrument; the raw OpenTelemetry SDK
with the same views (allowlist and cardinality limit); prometheus_client's
``labels(...)`` with the same label count (it turns the int into text itself);
and a floor written for the purpose — a dict of locked cells keyed by the label
values, the least a labelled counter can do in Python. Bound handles are compared
with prometheus_client's child (``labels(...)`` resolved once) and with the floor's
locked add.

Each call site is real code (generated with the dict literal written out), so a
"new dict" is the dict display the application writes, not a ``dict()`` call.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import Figure, interleave
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram

import ron_metrics
from ron_metrics.testing import config_for_tests

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
LIMIT = 100
# Attribute names per count: the status code is always among them.
NAMES = {
    1: ["http.response.status_code"],
    3: ["http.request.method", "http.route", "http.response.status_code"],
    5: [
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "network.protocol.version",
        "server.address",
    ],
}
VALUES = {
    "http.request.method": "GET",
    "http.route": "/items/{id}",
    "network.protocol.version": "1.1",
    "server.address": "api.internal",
}
CANDIDATES = ("ron-metrics", "raw SDK", "prometheus_client labels()", "floor")
HEADLINE = "3 attrs, new dict, int status"


@dataclass(frozen=True)
class Shape:
    name: str
    count: int
    new_dict: bool = True
    int_status: bool = True
    variant: str = ""  # "dropped", "rotate100", "overflow"


SHAPES = [
    Shape(
        f"{n} attrs, {'new' if new else 'same'} dict, {'int' if typed else 'str'} status",
        n,
        new,
        typed,
    )
    for n in (1, 3, 5)
    for new in (False, True)
    for typed in (False, True)
] + [
    Shape(f"{HEADLINE} + varying dropped user.id", 3, variant="dropped"),
    Shape(f"{HEADLINE}, 100 rotating sets", 3, variant="rotate100"),
    Shape(
        f"{HEADLINE}, 1,000 rotating sets past max_series 100", 3, variant="overflow"
    ),
]


class _Floor:
    """The least a labelled instrument does: one locked cell per label-value tuple."""

    def __init__(self, histogram: bool) -> None:
        self._cells: dict[tuple[Any, ...], list[Any]] = {}
        self._lock = threading.Lock()
        self._histogram = histogram

    def labels(self, *values: Any) -> list[Any]:
        cell = self._cells.get(values)
        if cell is None:
            with self._lock:
                cell = self._cells.setdefault(
                    values,
                    [threading.Lock(), 0.0, [0] * (len(BOUNDS) + 1)],
                )
        return cell

    @staticmethod
    def inc(cell: list[Any]) -> None:
        with cell[0]:
            cell[1] += 1

    @staticmethod
    def observe(cell: list[Any], value: float) -> None:
        index = bisect_left(BOUNDS, value)
        with cell[0]:
            cell[1] += value
            cell[2][index] += 1


def _status(shape: Shape) -> str:
    return "200" if shape.int_status else '"200"'


def _value_code(shape: Shape, name: str) -> str:
    if name == "http.response.status_code":
        return _status(shape)
    if name == "http.route" and shape.variant in {"rotate100", "overflow"}:
        return "ROUTES[next(TICK) % ROTATE]"
    return repr(VALUES[name])


def _source(shape: Shape, kind: str) -> dict[str, str]:
    """The loop body of each candidate for ``shape`` (generated, literal dicts)."""
    names = NAMES[shape.count]
    values = [_value_code(shape, name) for name in names]
    pairs = ", ".join(
        f"{name!r}: {value}" for name, value in zip(names, values, strict=True)
    )
    if shape.variant == "dropped":
        pairs += ", 'user.id': IDS[next(TICK) % 100000]"
    attributes = f"{{{pairs}}}" if shape.new_dict else "SAME"
    labels = ", ".join(values)
    if kind == "counter":
        return {
            "ron-metrics": f"ours.add(1, {attributes})",
            "raw SDK": f"raw.add(1, {attributes})",
            "prometheus_client labels()": f"prom.labels({labels}).inc()",
            "floor": f"FLOOR.inc(floor.labels({labels}))",
        }
    return {
        "ron-metrics": f"ours.record(0.3, {attributes})",
        "raw SDK": f"raw.record(0.3, {attributes})",
        "prometheus_client labels()": f"prom.labels({labels}).observe(0.3)",
        "floor": f"FLOOR.observe(floor.labels({labels}), 0.3)",
    }


def _compile(body: str, scope: dict[str, Any]) -> Callable[[int], None]:
    code = f"def run(ops):\n    for _ in range(ops):\n        {body}\n"
    namespace = dict(scope)
    exec(code, namespace)  # noqa: S102 - our own generated benchmark loop
    run: Callable[[int], None] = namespace["run"]
    return run


def _instruments(shape: Shape, kind: str) -> tuple[dict[str, Any], list[Any]]:
    names = NAMES[shape.count]
    limited = shape.variant == "overflow"
    max_series = LIMIT if limited else 2000
    config = config_for_tests(
        cardinality={
            "max_series": max_series,
            "instruments": {
                "work": {"attributes": names, "buckets": BOUNDS},
            },
        }
    )
    runtime = ron_metrics.start(config, set_global=False)
    reader = InMemoryMetricReader()
    view_kwargs: dict[str, Any] = {
        "instrument_name": "work",
        "attribute_keys": set(names),
        "aggregation_cardinality_limit": max_series,
    }
    if kind == "histogram":
        view_kwargs["aggregation"] = ExplicitBucketHistogramAggregation(BOUNDS)
    provider = MeterProvider(metric_readers=[reader], views=[View(**view_kwargs)])
    registry = CollectorRegistry()
    labels = [name.replace(".", "_") for name in names]
    if kind == "counter":
        ours: Any = runtime.get_meter("bench").create_counter("work")
        raw: Any = provider.get_meter("bench").create_counter("work")
        prom: Any = PromCounter("work", "Work.", labels, registry=registry)
    else:
        ours = runtime.get_meter("bench").create_histogram("work")
        raw = provider.get_meter("bench").create_histogram("work")
        prom = PromHistogram("work", "Work.", labels, buckets=BOUNDS, registry=registry)
    same = {
        name: (200 if shape.int_status else "200")
        if name.endswith("code")
        else VALUES[name]
        for name in names
    }
    scope = {
        "ours": ours,
        "raw": raw,
        "prom": prom,
        "floor": _Floor(kind == "histogram"),
        "FLOOR": _Floor,
        "SAME": same,
        "ROUTES": [f"/r{i}" for i in range(1000)],
        "ROTATE": 100 if shape.variant == "rotate100" else 1000,
        "IDS": [str(i) for i in range(100000)],
        "TICK": __import__("itertools").count(),
    }
    return scope, [runtime, provider]


def _bound(kind: str, ops: int, repeats: int) -> dict[str, Figure]:
    """Bound handles against prometheus_client's child and the floor's locked update."""
    shape = Shape("bound", 3)
    scope, owned = _instruments(shape, kind)
    attributes = {
        name: 200 if name.endswith("code") else VALUES[name] for name in NAMES[3]
    }
    child = scope["prom"].labels("GET", "/items/{id}", 200)
    cell = scope["floor"].labels("GET", "/items/{id}", 200)
    scope.update(
        bound=ron_metrics.bind(scope["ours"], attributes), child=child, cell=cell
    )
    if kind == "counter":
        bodies = {
            "ron-metrics bound": "bound.add(1)",
            "prometheus_client child": "child.inc()",
            "floor": "FLOOR.inc(cell)",
        }
    else:
        bodies = {
            "ron-metrics bound": "bound.record(0.3)",
            "prometheus_client child": "child.observe(0.3)",
            "floor": "FLOOR.observe(cell, 0.3)",
        }
    try:
        return interleave(
            {name: _compile(body, scope) for name, body in bodies.items()},
            ops,
            repeats,
            max(1000, ops // 10),
        )
    finally:
        for thing in owned:
            thing.shutdown()


def measure(ops: int, repeats: int) -> dict[str, Any]:
    """ns per call of every candidate for every shape; counters and histograms."""
    out: dict[str, Any] = {"shapes": {}, "bound": {}, "headline": HEADLINE}
    for kind in ("counter", "histogram"):
        out["shapes"][kind] = {}
        for shape in SHAPES:
            scope, owned = _instruments(shape, kind)
            try:
                loops = {
                    name: _compile(body, scope)
                    for name, body in _source(shape, kind).items()
                }
                out["shapes"][kind][shape.name] = interleave(
                    loops, ops, repeats, max(1000, ops // 10)
                )
            finally:
                for thing in owned:
                    thing.shutdown()
        out["bound"][kind] = _bound(kind, ops, repeats)
    return out


if __name__ == "__main__":
    import statistics

    found = measure(20_000, 5)
    for kind, shapes in found["shapes"].items():
        for name, figures in shapes.items():
            prom = figures["prometheus_client labels()"]
            cells = "  ".join(
                f"{c[:11]:>11} {figures[c].median:6.0f}"
                f" ({statistics.median(a / b for a, b in zip(figures[c].values, prom.values, strict=True)):.2f}x)"
                for c in CANDIDATES
            )
            print(f"{kind:9} {name:58} {cells}")
    for kind, figures in found["bound"].items():
        print(kind, {k: round(v.median) for k, v in figures.items()})
