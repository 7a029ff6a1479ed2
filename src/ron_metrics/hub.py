"""
The hub: the one cumulative metric reader every sink collects from.

It is a ``PrometheusMetricReader`` on a private ``CollectorRegistry``. A scrape
collects through the registry as usual; an OTLP tick asks for a *capture*, so the
same collection is handed back as ``MetricsData`` instead of being queued for
Prometheus. Both paths run under one lock, so exactly one collection is in flight
and at most one ``MetricsData`` is ever queued for translation (the exporter translates
every queued collection at a scrape, so two would yield duplicate series).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogram,
    Metric,
    MetricsData,
)
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.registry import CollectorRegistry

from ron_metrics._metrics_data import map_metrics
from ron_metrics._overflow import OverflowAccounting
from ron_metrics.fast.meter import FastRegistry

__all__ = ["NO_DESCRIPTION", "SAMPLE_SUFFIXES", "HubReader", "without_name_clashes"]

# The HELP text of an instrument without a description (promtool rejects an empty
# HELP); both encoders write it, so they write the same bytes.
NO_DESCRIPTION = "Instrument {} (no description)."


def _with_help_text(metric: Metric) -> Metric:
    # promtool flags an empty HELP; an instrument without a description still
    # deserves a line that says what it is.
    if metric.description:
        return metric
    return dataclasses.replace(metric, description=NO_DESCRIPTION.format(metric.name))


def _for_reference(metric: Metric) -> Metric | None:
    # opentelemetry-exporter-prometheus fails on an exponential histogram (the
    # whole scrape with it): it is left out here, as the specification allows
    # for formats without native histograms.
    if isinstance(metric.data, ExponentialHistogram):
        return None
    return _with_help_text(metric)


def _fill_descriptions(data: MetricsData) -> MetricsData:
    if all(
        metric.description and not isinstance(metric.data, ExponentialHistogram)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    ):
        return data
    return map_metrics(data, lambda _scope, metric: _for_reference(metric))


# Sample names each Prometheus family type writes besides its own name.
SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}


def _names_taken(family: PromFamily) -> set[str]:
    names = {family.name} | {sample.name for sample in family.samples}
    names.update(
        family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())
    )
    return names


def without_name_clashes(
    families: list[PromFamily], on_clash: Callable[[str], None]
) -> list[PromFamily]:
    """
    Keep each exposition name for one family: the first one collected wins.

    Two instruments (from different meters, or of different types or units) can
    translate to the same Prometheus name — a user counter ``rejected`` next to
    our ``rejected_total``, or two libraries' ``http.server.request.duration``.
    Exposing both would make the whole page invalid. Families are collected in
    the order their meters were created, and ron-metrics' own meter is created
    first, so its self-metrics always keep their names. A later family that
    would reuse any name (family or sample) is left out of the exposition (not
    of OTLP), and ``on_clash`` is told its name.
    """
    taken: set[str] = set()
    kept: list[PromFamily] = []
    for family in families:
        names = _names_taken(family)
        if names & taken:
            on_clash(family.name)
            continue
        taken |= names
        if _drop_repeated_series(family):
            on_clash(family.name)
        kept.append(family)
    return kept


def _drop_repeated_series(family: PromFamily) -> bool:
    # The same instrument (name, unit, description, type) in several meters is
    # translated into one family; a series two of them report would appear twice.
    # The meter created first keeps it.
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for sample in family.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key not in seen:
            seen.add(key)
            unique.append(sample)
    if len(unique) == len(family.samples):
        return False
    family.samples = unique
    return True


class HubReader(PrometheusMetricReader):
    """
    The single reader of the MeterProvider; sinks call :meth:`scrape` or :meth:`capture`.

    Args:
        target_info: Emit the ``target_info`` series carrying the resource.
        scope_labels: Put ``otel_scope_*`` labels on every series.
    """

    def __init__(
        self,
        *,
        target_info: bool = True,
        scope_labels: bool = False,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.target_info = target_info
        self.scope_labels = scope_labels
        super().__init__(
            disable_target_info=not target_info,
            scope_info_enabled=scope_labels,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._capturing = False
        self._captured: MetricsData | None = None
        # Set by the provider once the self-metrics exist.
        self.overflow: OverflowAccounting | None = None
        # Called once per family name that had to be left out of the exposition.
        self.on_name_collision: Callable[[str], None] | None = None
        self._clashes_seen: set[str] = set()
        self.collections = 0
        # The fast path's streams, merged into every collection first.
        self.fast: FastRegistry | None = None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self.collections += 1
        if self.fast is not None:
            metrics_data = self.fast.merge_into(metrics_data) or metrics_data
        if self.overflow is not None:
            metrics_data = self.overflow.account(metrics_data)
        if self._capturing:
            self._captured = metrics_data
            return
        super()._receive_metrics(
            _fill_descriptions(metrics_data), timeout_millis, **kwargs
        )

    def scrape(self, timeout_millis: float = 10_000) -> list[PromFamily]:
        """
        Collect once and translate to Prometheus metric families.

        Families whose names clash with an earlier one are left out (see
        :func:`without_name_clashes`). Blocking; call it off the event loop.
        """
        with self._lock:
            families = list(self.registry.collect())
        return without_name_clashes(families, self.report_clash)

    def report_clash(self, name: str) -> None:
        """
        Report a family left out of the exposition, once per name.
        """
        if name in self._clashes_seen:
            return
        self._clashes_seen.add(name)
        if self.on_name_collision is not None:
            self.on_name_collision(name)

    def capture(self, timeout_millis: float = 10_000) -> MetricsData | None:
        """
        Collect once and return the raw ``MetricsData`` (for OTLP), not queued for Prometheus.

        Blocking; call it off the event loop.
        """
        with self._lock:
            self._capturing = True
            try:
                self.collect(timeout_millis=timeout_millis)
            finally:
                self._capturing = False
            captured, self._captured = self._captured, None
            return captured
