"""
Configuration → OpenTelemetry ``View``\\s.

Each instrument gets exactly one stream: the first matching rule wins (exact names
before globs, then file order), and the default view covers every instrument no
rule claims. OTel's ``View`` would otherwise give an instrument one stream per
matching view, so each of our views also refuses instruments that an earlier rule
matched. Our own self-metrics (meter ``ron_metrics``) keep all their attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from opentelemetry.sdk.metrics import ExemplarReservoir, Histogram
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    DefaultAggregation,
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from ron_metrics.config import CardinalityConfig, InstrumentRule
from ron_metrics.errors import ConfigError
from ron_metrics.multiprocess.aggregation import SharedAggregation

__all__ = ["SECONDS_BUCKETS", "SELF_METER_NAME", "build_views"]

SELF_METER_NAME = "ron_metrics"
# The semantic conventions' advice for durations in seconds (the SDK's own default
# boundaries, 0 … 10000, are made for milliseconds: seconds would land in one bucket).
SECONDS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


class _Histograms(Aggregation):
    """
    The SDK's default aggregation, with a histogram's kind chosen by the config.

    An exponential histogram takes the configured ``max_size`` and ``max_scale``.
    An explicit one takes its boundaries in this order: configured ``buckets``,
    the instrument's advisory boundaries, the seconds buckets when the unit is
    ``s``, the SDK default.
    """

    def __init__(
        self,
        configured: tuple[float, ...] | None,
        exponential: tuple[int, int] | None = None,
    ) -> None:
        self._configured = configured
        self._exponential = exponential

    # `_create_aggregation` is the SDK's aggregation factory hook (tested against
    # opentelemetry-sdk 1.45 in tests/test_views.py).
    def _create_aggregation(
        self,
        instrument: Any,
        attributes: Any,
        reservoir_factory: Any,
        start_time_unix_nano: int,
    ) -> Any:
        chosen: Aggregation = DefaultAggregation()
        if isinstance(instrument, Histogram) and self._exponential is not None:
            max_size, max_scale = self._exponential
            chosen = ExponentialBucketHistogramAggregation(max_size, max_scale)
        elif isinstance(instrument, Histogram):
            advised = instrument._advisory.explicit_bucket_boundaries
            unit_default = SECONDS_BUCKETS if instrument.unit == "s" else None
            chosen = ExplicitBucketHistogramAggregation(
                self._configured or advised or unit_default
            )
        return chosen._create_aggregation(
            instrument, attributes, reservoir_factory, start_time_unix_nano
        )


class _NoExemplars(ExemplarReservoir):
    """
    A reservoir that keeps nothing: exemplars cost a collect per series per scrape,
    and the Prometheus text formats never carry them.
    """

    def offer(self, *args: Any, **kwargs: Any) -> None:
        return None

    def collect(self, point_attributes: Any) -> list[Any]:
        return []


_NO_EXEMPLARS = _NoExemplars()


def _no_exemplars(aggregation_type: Any) -> Any:
    return lambda **_kwargs: _NO_EXEMPLARS


class _ExclusiveView(View):
    """
    A View that steps aside for instruments claimed by higher-priority patterns.
    """

    def __init__(
        self, *, excluded: Sequence[str], exclude_self: bool, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._excluded = tuple(excluded)
        self._exclude_self = exclude_self

    # `_match` is the SDK's documented extension point for selection (tested
    # against opentelemetry-sdk 1.45; see tests/test_views.py).
    def _match(self, instrument: Any) -> bool:
        if (
            self._exclude_self
            and instrument.instrumentation_scope.name == SELF_METER_NAME
        ):
            return False
        name = instrument.name.lower()
        if any(fnmatchcase(name, pattern) for pattern in self._excluded):
            return False
        return bool(super()._match(instrument))


def _aggregation(
    buckets: tuple[float, ...] | None,
    shared: bool,
    exponential: tuple[int, int] | None = None,
) -> Aggregation:
    chosen = _Histograms(buckets, exponential)
    return SharedAggregation(chosen) if shared else chosen


def _exponential(
    rule: InstrumentRule | None, cardinality: CardinalityConfig
) -> tuple[int, int] | None:
    # The rule's own choice, else the default for every histogram.
    kind = (rule and rule.aggregation) or cardinality.histogram_aggregation
    if kind != "exponential":
        return None
    max_size = rule.max_size if rule and rule.max_size is not None else None
    max_scale = rule.max_scale if rule and rule.max_scale is not None else None
    return (
        cardinality.histogram_max_size if max_size is None else max_size,
        cardinality.histogram_max_scale if max_scale is None else max_scale,
    )


def _rule_view(
    rule: InstrumentRule,
    excluded: Sequence[str],
    cardinality: CardinalityConfig,
    reservoirs: dict[str, Any],
    shared: bool,
) -> View:
    kwargs: dict[str, Any] = {"instrument_name": rule.pattern, **reservoirs}
    if rule.drop:
        kwargs["aggregation"] = DropAggregation()
    else:
        kwargs["aggregation"] = _aggregation(
            rule.buckets, shared, _exponential(rule, cardinality)
        )
        if rule.attributes is not None:
            kwargs["attribute_keys"] = set(rule.attributes)
        kwargs["aggregation_cardinality_limit"] = (
            cardinality.max_series if rule.max_series is None else rule.max_series
        )
    return _ExclusiveView(excluded=excluded, exclude_self=True, **kwargs)


def build_views(
    cardinality: CardinalityConfig, *, exemplars: bool = True, shared: bool = False
) -> list[View]:
    """
    Build one view per instrument rule and a default view (self-metrics match neither).

    Args:
        exemplars: Keep exemplar reservoirs (only an OTLP export can carry them).
        shared: Write every series through to the process's multi-process store
            (self-metrics then get a view of their own that does so too).

    Raises:
        ConfigError: If the SDK refuses a view built from the config.
    """
    views: list[View] = []
    claimed: list[str] = []
    reservoirs = {} if exemplars else {"exemplar_reservoir_factory": _no_exemplars}
    try:
        for rule in cardinality.instruments:
            views.append(_rule_view(rule, claimed, cardinality, reservoirs, shared))
            claimed.append(rule.pattern)
        default_kwargs: dict[str, Any] = {
            **reservoirs,
            "instrument_name": "*",
            "aggregation_cardinality_limit": cardinality.max_series,
            "aggregation": _aggregation(None, shared, _exponential(None, cardinality)),
        }
        if cardinality.default_attributes is not None:
            default_kwargs["attribute_keys"] = set(cardinality.default_attributes)
        views.append(
            _ExclusiveView(excluded=claimed, exclude_self=True, **default_kwargs)
        )
        # Our self-metrics match no view, so the SDK's default view keeps all their
        # attributes — unless they must be shared with the group.
        if shared:
            views.append(
                View(
                    meter_name=SELF_METER_NAME,
                    instrument_name="*",
                    aggregation=_aggregation(None, shared=True),
                )
            )
    except Exception as exc:  # OTel's View raises bare Exception/ValueError
        raise ConfigError.single(
            "cardinality", f"the OpenTelemetry SDK refused a view: {exc}"
        ) from exc
    return views
