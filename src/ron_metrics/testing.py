"""
Helpers for testing your own instrumentation with ron-metrics.

Example::

    from ron_metrics.testing import runtime_for_tests, sample_value

    with runtime_for_tests() as runtime:
        counter = runtime.get_meter("app").create_counter("jobs")
        counter.add(3, {"queue": "default"})
        assert sample_value(runtime, "jobs_total", queue="default") == 3

The runtime has no exporter (``kind = "none"``) and does not touch the OTel
global, so tests can create as many as they like.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ron_metrics.config import Config, load_config
from ron_metrics.runtime import Runtime, start

__all__ = [
    "config_for_tests",
    "runtime_for_tests",
    "sample_value",
    "samples",
]


def config_for_tests(**sections: Mapping[str, Any]) -> Config:
    """
    A config built from ``sections`` only (the environment is ignored).

    ``service.name`` defaults to ``"test"`` and ``exporter.kind`` to ``"none"``.
    """
    overrides: dict[str, Any] = dict(sections)
    overrides["service"] = {"name": "test", **dict(sections.get("service", {}))}
    overrides["exporter"] = {"kind": "none", **dict(sections.get("exporter", {}))}
    return load_config(None, env={}, **overrides)


@contextmanager
def runtime_for_tests(config: Config | None = None) -> Iterator[Runtime]:
    """
    Start a runtime without touching the OTel global, and shut it down afterwards.
    """
    runtime = start(config or config_for_tests(), set_global=False)
    try:
        yield runtime
    finally:
        runtime.shutdown()


def samples(runtime: Runtime) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """
    Collect once and return every Prometheus sample as ``{(name, labels): value}``.
    """
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in runtime._hub.scrape():
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def sample_value(runtime: Runtime, name: str, **labels: str) -> float | None:
    """
    The value of the one sample ``name`` whose labels include ``labels``; ``None`` if absent.

    Raises:
        LookupError: If several samples match.
    """
    wanted = set(labels.items())
    found = [
        value
        for (sample_name, sample_labels), value in samples(runtime).items()
        if sample_name == name and wanted <= sample_labels
    ]
    if len(found) > 1:
        raise LookupError(f"{len(found)} samples named {name!r} match {labels!r}")
    return found[0] if found else None
