"""
Exemplars: what keeping them costs a measurement, interleaved in one run.

Two runtimes with the same configuration except the exemplar filter: one with
``always_off`` (no exemplar work at all: the reference) and one with the default
``trace_based``. The ``trace_based`` one is measured with no span current, inside
an unsampled span and inside a sampled span (the OpenTelemetry tracing SDK's own
spans, made current as a tracing middleware would). Two call shapes:

- ``counter.add(1, attributes)``: three attributes, the same dict every call;
- ``histogram.record(v, {...})``: the worst realistic shape, three attributes in a
  new dict literal per call with an int status code, a latency that varies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import NO_RUNTIME, Figure, interleave
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import ron_metrics
from ron_metrics.testing import config_for_tests

KEYS = ["http.request.method", "http.route", "http.response.status_code"]
ATTRS = {
    "http.request.method": "GET",
    "http.route": "/items/{id}",
    "http.response.status_code": 200,
}
_VALUES = [0.001 * (1 + i % 97) for i in range(4096)]
_SAMPLED = TracerProvider().get_tracer("bench")
_UNSAMPLED = TracerProvider(sampler=ALWAYS_OFF).get_tracer("bench")
SPANS = ("no span", "unsampled span", "sampled span")


def _runtime(exemplar_filter: str) -> ron_metrics.Runtime:
    config = config_for_tests(
        **NO_RUNTIME,
        sdk={"exemplar_filter": exemplar_filter},
        cardinality={"default_attributes": KEYS},
    )
    return ron_metrics.start(config, set_global=False)


def _adds(counter: Any) -> Callable[[int], None]:
    def run(ops: int) -> None:
        for _ in range(ops):
            counter.add(1, ATTRS)

    return run


def _records(histogram: Any) -> Callable[[int], None]:
    values = _VALUES

    def run(ops: int) -> None:
        for i in range(ops):
            histogram.record(
                values[i & 4095],
                {
                    "http.request.method": "GET",
                    "http.route": "/items/{id}",
                    "http.response.status_code": 200,
                },
            )

    return run


def _in_span(span: str, loop: Callable[[int], None]) -> Callable[[int], None]:
    if span == "no span":
        return loop
    tracer = _SAMPLED if span == "sampled span" else _UNSAMPLED

    def run(ops: int) -> None:
        with tracer.start_as_current_span("request"):
            loop(ops)

    return run


def measure(ops: int, repeats: int) -> dict[str, dict[str, Figure]]:
    """ns/op per shape: the ``always_off`` reference, then ``trace_based`` per span."""
    off, on = _runtime("always_off"), _runtime("trace_based")
    try:
        found: dict[str, dict[str, Figure]] = {}
        for shape, make, create in (
            ("counter.add, same dict", _adds, "create_counter"),
            ("histogram.record, new dict, int status", _records, "create_histogram"),
        ):
            candidates = {
                "always_off": make(getattr(off.get_meter("bench"), create)("work"))
            }
            instrument = getattr(on.get_meter("bench"), create)("work")
            for span in SPANS:
                candidates[f"trace_based, {span}"] = _in_span(span, make(instrument))
            found[shape] = interleave(candidates, ops, repeats, 2000)
        return found
    finally:
        off.shutdown()
        on.shutdown()


if __name__ == "__main__":
    for shape, figures in measure(200_000, 7).items():
        for name, figure in figures.items():
            print(f"{shape:42} {name:30} {figure.text(0)} ns/op")
