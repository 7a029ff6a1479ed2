"""
Meters of our provider hand out fast synchronous instruments; the hub collects them.

A :class:`FastMeter` wraps the SDK's meter. Creating a synchronous instrument still
goes through the SDK (name validation, duplicate and conflict handling, the same
object for the same registration), and the SDK instrument is what the views match
against — so the provider's views decide each stream exactly as they would on the
SDK path. The instrument the app gets feeds pre-aggregating cells instead.
Observable instruments stay on the SDK path. Histograms are explicit or
exponential (the SDK's algorithm, see :mod:`ron_metrics.fast.exponential`).

:class:`FastRegistry` keeps every stream in creation order; the hub turns them into
data points of the one collection before anything reads it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics._internal.aggregation import (
    _DropAggregation,
    _ExplicitBucketHistogramAggregation,
    _ExponentialBucketHistogramAggregation,
    _LastValueAggregation,
    _SumAggregation,
)
from opentelemetry.sdk.metrics._internal.metric_reader_storage import (
    _DEFAULT_VIEW,
    MetricReaderStorage,
)
from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource

from ron_metrics.fast.exemplars import probe_for
from ron_metrics.fast.instruments import (
    FastCounter,
    FastGauge,
    FastHistogram,
    FastUpDownCounter,
)
from ron_metrics.fast.stream import Stream
from ron_metrics.multiprocess.aggregation import fast_record

__all__ = ["Collectable", "FastMeter", "FastRegistry"]

_DEFAULT_LIMIT = 2000


class Collectable(Protocol):
    """
    What a scope collects: a fast stream, or a source of one finished metric.
    """

    def collect(self, now: int) -> Metric | None: ...

    def reset(self) -> None: ...


class FastRegistry:
    """
    Every fast stream of one provider, by meter scope, in creation order.

    Args:
        views: The provider's views (what the SDK path would apply).
        limit_of: The reader's cardinality limit for an instrument class, when the
            view sets none.
        resource: The provider's resource (for a collection with no SDK data).
        exemplar_filter: ``trace_based``, ``always_on`` or ``always_off``.
    """

    def __init__(
        self,
        views: Sequence[Any],
        limit_of: Callable[[type], int],
        resource: Callable[[], Resource],
        *,
        shared: bool = False,
        exemplar_filter: str = "always_off",
    ) -> None:
        self._views = tuple(views)
        # Every instrument's exemplar probe (and whether to keep without a span).
        self._exemplars = probe_for(exemplar_filter)
        # In a multi-process group every cell also writes through to the store.
        self._shared = shared
        self._limit_of = limit_of
        self._resource = resource
        self._lock = threading.Lock()
        self._instruments: dict[int, Any] = {}  # id(SDK instrument) -> ours
        self._scopes: dict[Any, list[Collectable]] = {}  # scope -> streams
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset(ref))

    def instrument(self, sdk_instrument: Any, make: type) -> Any:
        """
        Ours for ``sdk_instrument`` (the same object every time it is registered).
        """
        with self._lock:
            found = self._instruments.get(id(sdk_instrument))
            if found is not None and found[0] is sdk_instrument:
                return found[1]
            streams = self._streams(sdk_instrument)
            ours = (
                sdk_instrument
                if streams is None
                else make(
                    sdk_instrument.name,
                    sdk_instrument.unit,
                    sdk_instrument.description,
                    tuple(streams),
                    probe=self._exemplars[0],
                    always=self._exemplars[1],
                )
            )
            self._instruments[id(sdk_instrument)] = (sdk_instrument, ours)
            if streams:
                scope = sdk_instrument.instrumentation_scope
                self._scopes.setdefault(scope, []).extend(streams)
            return ours

    def _streams(self, instrument: Any) -> list[Stream] | None:
        views = [
            view
            for view in self._views
            if view._match(instrument)
            and MetricReaderStorage._check_view_instrument_compatibility(
                view, instrument
            )
        ] or [_DEFAULT_VIEW]
        streams: list[Stream] = []
        for view in views:
            template = view._aggregation._create_aggregation(
                instrument, {}, view._exemplar_reservoir_factory, 0
            )
            if isinstance(template, _DropAggregation):
                continue
            shape = None
            if isinstance(template, _ExplicitBucketHistogramAggregation):
                kind, bounds = "histogram", tuple(template._boundaries)
            elif isinstance(template, _ExponentialBucketHistogramAggregation):
                kind, bounds = "histogram", ()
                shape = (template._max_size, template._max_scale)
            elif isinstance(template, _LastValueAggregation):
                kind, bounds = "gauge", ()
            elif isinstance(template, _SumAggregation):
                kind, bounds = "sum", ()
            else:
                return None  # not implemented here: the SDK path serves it
            limit = view._aggregation_cardinality_limit
            name = view._name or instrument.name
            description = view._description or instrument.description
            monotonic = isinstance(instrument, SdkCounter)
            streams.append(
                Stream(
                    name=name,
                    description=description,
                    unit=instrument.unit,
                    kind=kind,
                    monotonic=monotonic,
                    attribute_keys=(
                        frozenset(view._attribute_keys)
                        if view._attribute_keys is not None
                        else None
                    ),
                    limit=limit
                    if limit is not None
                    else self._limit_of(type(instrument)),
                    bounds=bounds,
                    shape=shape,
                    shared=self._record_maker(
                        instrument,
                        name,
                        description,
                        monotonic,
                        bounds=bounds,
                        shape=shape,
                    ),
                )
            )
        return streams

    def _record_maker(
        self,
        instrument: Any,
        name: str,
        description: str,
        monotonic: bool,
        *,
        bounds: tuple[float, ...],
        shape: tuple[int, int] | None,
    ) -> Callable[[str, Any], Any] | None:
        if not self._shared:
            return None

        def record(kind: str, attributes: Any) -> Any:
            return fast_record(
                scope=instrument.instrumentation_scope,
                name=name,
                kind=kind,
                monotonic=monotonic,
                unit=instrument.unit,
                description=description,
                bounds=bounds,
                attributes=attributes,
                shape=shape,
            )

        return record

    def merge_into(self, data: MetricsData | None) -> MetricsData | None:
        """
        ``data`` with every fast stream's points added (a new object; ``data`` unchanged).

        Fast scopes come first, in the order their meters were created (ours is
        created first), each followed by the SDK's metrics of the same scope.
        """
        now = time.time_ns()
        with self._lock:
            scopes = {scope: list(streams) for scope, streams in self._scopes.items()}
        fast: dict[Any, list[Metric]] = {}
        for scope, streams in scopes.items():
            metrics = [m for s in streams if (m := s.collect(now)) is not None]
            if metrics:
                fast[scope] = metrics
        if not fast:
            return data
        resource_metrics = data.resource_metrics if data is not None else []
        first = resource_metrics[0] if resource_metrics else None
        sdk_scopes = list(first.scope_metrics) if first is not None else []
        merged: list[ScopeMetrics] = []
        for scope, metrics in fast.items():
            same = [sm for sm in sdk_scopes if sm.scope == scope]
            extra = [m for sm in same for m in sm.metrics]
            merged.append(
                ScopeMetrics(
                    scope=scope,
                    metrics=[*metrics, *extra],
                    schema_url=scope.schema_url or "",
                )
            )
        merged += [sm for sm in sdk_scopes if sm.scope not in fast]
        resource = first.resource if first is not None else self._resource()
        schema_url = first.schema_url if first is not None else ""
        return MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource, scope_metrics=merged, schema_url=schema_url
                ),
                *resource_metrics[1:],
            ]
        )

    def add_source(self, scope: Any, source: Collectable) -> None:
        """
        Collect ``source`` with ``scope``'s streams (after them, in the order added).
        """
        with self._lock:
            self._scopes.setdefault(scope, []).append(source)

    def reset(self) -> None:
        """Every stream from zero (a forked child)."""
        self._lock = threading.Lock()
        for streams in self._scopes.values():
            for stream in streams:
                stream.reset()


def _reset(ref: weakref.ReferenceType[FastRegistry]) -> None:
    registry = ref()
    if registry is not None:
        registry.reset()


class FastMeter(Meter):
    """
    A meter whose synchronous instruments take the fast path.
    """

    def __init__(self, sdk_meter: Any, registry: FastRegistry) -> None:
        scope = sdk_meter._instrumentation_scope
        super().__init__(scope.name, scope.version, scope.schema_url)
        self._sdk = sdk_meter
        self._registry = registry

    def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
        made = self._sdk.create_counter(name, unit, description)
        return self._registry.instrument(made, FastCounter)

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> Any:
        made = self._sdk.create_up_down_counter(name, unit, description)
        return self._registry.instrument(made, FastUpDownCounter)

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> Any:
        made = self._sdk.create_histogram(
            name,
            unit,
            description,
            explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory,
        )
        return self._registry.instrument(made, FastHistogram)

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Any:
        made = self._sdk.create_gauge(name, unit, description)
        return self._registry.instrument(made, FastGauge)

    def add_source(self, source: Collectable) -> None:
        """
        Add ``source``'s finished metric to this meter's scope at every collection.
        """
        self._registry.add_source(self._sdk._instrumentation_scope, source)

    def create_observable_counter(self, *args: Any, **kwargs: Any) -> Any:
        return self._sdk.create_observable_counter(*args, **kwargs)

    def create_observable_up_down_counter(self, *args: Any, **kwargs: Any) -> Any:
        return self._sdk.create_observable_up_down_counter(*args, **kwargs)

    def create_observable_gauge(self, *args: Any, **kwargs: Any) -> Any:
        return self._sdk.create_observable_gauge(*args, **kwargs)
